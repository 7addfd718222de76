"""Adapters discovered from a model's module tree, for families the table does not know.

The table (:mod:`depthscope.models.adapters`) is the reviewed path; a model whose ``model_type``
(or transformers class) it does not know is searched instead, with one probe forward pass:

1. **layers**: the ``nn.ModuleList`` of ``num_hidden_layers`` blocks of one class (the one
   holding most weights if several qualify, e.g. a list of as many experts);
2. **final norm**: the module outside the layers that reads the last layer's output, as the
   model passes it on (a name or class with "norm" first); the unembedding is the model's
   ``get_output_embeddings()``;
3. **sites**: every direct child of a decoder layer is hooked once; a pair of children whose
   outputs, added to the layer's input, give the layer's output in every layer is what attention
   and the MLP add. That covers the table's known shapes and their renamings: llama-like
   sequential blocks (``self_attn``/``attention``/``attn`` + ``mlp``/``feed_forward``/
   ``block_sparse_moe``/``ffn``/... — MoE blocks are one branch), post-sublayer norms (Gemma 2,
   OLMo 2, GLM 4, EXAONE 4) and parallel blocks (Cohere, CodeGen). Pairs are ranked by that
   error (measured as the proof measures, :func:`~depthscope.engine.proof.token_errors`), and
   names that look like attention then MLP win ties;
4. **MLP input and parallel**: the first child after the attention site that reads ``h + a`` is
   ``mlp_in`` (sequential); if none does, the child nearest before the MLP site that reads ``h``
   is (parallel).

The first candidate that the load-time proof (:func:`~depthscope.engine.proof.prove`, the same
check every load runs) accepts becomes the model's adapter, kept for the session under its
``model_type`` (:func:`~depthscope.models.adapters.remember_discovered`) and marked
``source: "discovered"`` in ``run.json``. A model for which none passes is refused in one line
naming its model type and the best candidate's mismatch (layer, size).
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass

import torch
from torch import nn

from depthscope.core.errors import DepthscopeError, first_line
from depthscope.engine import proof
from depthscope.engine.prefix_packing import pack_prompt
from depthscope.engine.replay import replay
from depthscope.engine.trace import Trace
from depthscope.models.adapters import (
    Adapter,
    BoundAdapter,
    lookup_adapter,
    module_at,
    remember_discovered,
    text_config,
    unsupported,
)
from depthscope.models.devices import home_device

ATTENTION_LIKE = re.compile(r"attn|attention|mixer|mamba|conv|temporal|token_mix", re.I)
MLP_LIKE = re.compile(r"mlp|feed_?forward|ffn|moe|expert|fc2|channel", re.I)
NORM_LIKE = re.compile(r"norm|ln", re.I)
OTHER_TOWERS = re.compile(r"vision|visual|image|audio|speech|encoder|vqmodel|tower", re.I)
MAX_PROVEN = 3  # candidates given to the proof before the model is refused
NEAR = 10.0  # a candidate is proven when its ranking error is within NEAR × the tolerance


@dataclass
class _Child:
    """One child name of the decoder layers, per layer: whether the layer has it, its first
    input and output, how often it ran and when (its position among the layer's calls)."""

    present: list
    inputs: list
    outputs: list
    calls: list
    orders: list

    @classmethod
    def absent(cls, n: int) -> _Child:
        """An empty record for ``n`` layers (in none of them, never run)."""
        return cls([False] * n, [None] * n, [None] * n, [0] * n, [float("inf")] * n)


@dataclass
class _Observed:
    h_in: list  # per layer [B, T, d]
    h_out: list
    children: dict  # name -> _Child
    outside: list  # (path, module, first input) of modules outside the layers, in call order
    valid: torch.Tensor
    head_input: torch.Tensor | None = None


def _first_input(args: tuple, kwargs: dict) -> torch.Tensor | None:
    for value in (*args, kwargs.get("hidden_states"), *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value
    return None


def _first_output(output: object) -> torch.Tensor | None:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    return None


def n_layers_of(model: nn.Module) -> int | None:
    value = getattr(text_config(model.config), "num_hidden_layers", None)
    return value if isinstance(value, int) and value > 0 else None


def find_layers(model: nn.Module) -> str | None:
    """The path of the decoder layers: a ``ModuleList`` of ``num_hidden_layers`` blocks of one
    class (most weights first), else of mixed classes, else the longest list of one class."""
    n = n_layers_of(model)
    lists = [
        (path, module)
        for path, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and len(module) > 0 and path
    ]

    def weights(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    def same(module: nn.Module) -> bool:
        return len({type(m) for m in module}) == 1

    def text_first(path: str) -> bool:  # a wrapper's language model, not its vision tower
        return not OTHER_TOWERS.search(path)

    for pick in (
        [x for x in lists if len(x[1]) == n and same(x[1])],
        [x for x in lists if len(x[1]) == n],
        [x for x in lists if n is None and same(x[1])],
    ):
        if pick:
            return max(pick, key=lambda x: (text_first(x[0]), len(x[1]), weights(x[1])))[0]
    return None


@torch.no_grad()
def observe(model: nn.Module, layers_path: str, batch) -> _Observed:
    """One probe forward pass with every layer's direct children hooked (copies kept, so a
    model that edits a child's output in place later cannot change what was seen)."""
    layers = list(module_at(model, layers_path))
    n = len(layers)
    h_in: list = [None] * n
    h_out: list = [None] * n
    children: dict[str, _Child] = {}
    outside: list = []
    counters = [0] * n
    handles = []

    def keep(value):
        return None if value is None else value.detach().clone()

    for index, layer in enumerate(layers):

        def pre(module, args, kwargs, index=index):
            h_in[index] = keep(_first_input(args, kwargs))

        def post(module, args, output, index=index):
            h_out[index] = keep(_first_output(output))

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post))
        for name, child in layer.named_children():
            if name not in children:
                children[name] = _Child.absent(n)
            record = children[name]
            record.present[index] = True

            def child_pre(module, args, kwargs, index=index, record=record):
                record.calls[index] += 1
                if record.calls[index] == 1:
                    record.inputs[index] = keep(_first_input(args, kwargs))
                    counters[index] += 1
                    record.orders[index] = counters[index]

            def child_post(module, args, output, index=index, record=record):
                if record.calls[index] == 1:
                    record.outputs[index] = keep(_first_output(output))

            handles.append(child.register_forward_pre_hook(child_pre, with_kwargs=True))
            handles.append(child.register_forward_hook(child_post))
    head = model.get_output_embeddings()
    head_input: list = [None]

    def head_pre(module, args, kwargs):
        head_input[0] = keep(_first_input(args, kwargs))

    handles.append(head.register_forward_pre_hook(head_pre, with_kwargs=True))
    for path, module in model.named_modules():
        inside = path == layers_path or path.startswith(layers_path + ".")
        ancestor = not path or layers_path.startswith(path + ".")
        if inside or ancestor or module is head:
            continue

        def outside_pre(module, args, kwargs, path=path):
            outside.append((path, module, keep(_first_input(args, kwargs))))

        handles.append(module.register_forward_pre_hook(outside_pre, with_kwargs=True))
    home = home_device(model)
    batch = batch.to(home)
    try:
        model(input_ids=batch.input_ids, attention_mask=batch.valid.long(), use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return _Observed(h_in, h_out, children, outside, batch.valid, head_input[0])


def _close(actual, expected, valid, limit: float) -> bool:
    if actual is None or expected is None or actual.shape != expected.shape:
        return False
    return proof.token_errors(actual, expected, valid)["max_rel"] <= limit


@dataclass
class Candidate:
    """Per layer, the child whose output attention adds and the one the MLP adds."""

    attn: list  # per layer: child name
    mlp: list
    errors: list  # per layer: relative error of h + a + m against the layer's output
    looks_right: int  # names that look like attention then MLP (or norms): 0-2

    order: tuple = ((), ())  # the order of alternatives (attention, MLP) where layers differ

    @property
    def attn_out(self) -> str:
        return _alternatives([*self.order[0], *self.attn])

    @property
    def mlp_out(self) -> str:
        return _alternatives([*self.order[1], *self.mlp])

    @property
    def worst_layer(self) -> int:
        return max(range(len(self.errors)), key=lambda i: self.errors[i])

    @property
    def error(self) -> float:
        return max(self.errors)


def _alternatives(names: list) -> str:
    """One adapter path for per-layer names: ``"a"``, or ``"a|b"`` (each layer: the first it has)."""
    return "|".join(dict.fromkeys(names))


def _ordered(seen: _Observed, names: list) -> list | None:
    """``names`` (per layer) with its distinct names put in an order in which "the first one the
    layer has" picks ``names[k]`` in every layer ``k``; None if no order does."""
    distinct = list(dict.fromkeys(names))
    for order in itertools.permutations(distinct):
        if all(
            next((o for o in order if seen.children[o].present[k]), None) == name
            for k, name in enumerate(names)
        ):
            return [*order, *names]  # _alternatives keeps the first occurrence of each
    return None


def _usable(seen: _Observed, k: int) -> list[str]:
    """Layer ``k``'s children that ran once with a residual-shaped output, in call order."""
    h = seen.h_in[k]
    names = [
        name
        for name, child in seen.children.items()
        if child.calls[k] == 1
        and child.outputs[k] is not None
        and child.outputs[k].shape == h.shape
    ]
    return sorted(names, key=lambda name: seen.children[name].orders[k])


def _looks(x: str, y: str) -> int:
    return bool(ATTENTION_LIKE.search(x) or NORM_LIKE.search(x)) + bool(
        MLP_LIKE.search(y) or NORM_LIKE.search(y)
    )


def candidates(seen: _Observed) -> list[Candidate]:
    """Pairs of children whose outputs added to a layer's input give its output, ranked by that
    error (worst layer), then by how their names look: every pair present in all layers, and
    the best pair of each layer where the layers differ (hybrid stacks: ``linear_attn`` in some
    layers, ``self_attn`` in others)."""
    n = len(seen.h_in)
    per_layer: list[dict] = []
    for k in range(n):
        names = _usable(seen, k)
        h, out = seen.h_in[k].float(), seen.h_out[k]
        errors = {}
        for i, x in enumerate(names):
            a = seen.children[x].outputs[k].float()
            for y in names[i + 1 :]:
                total = h + a + seen.children[y].outputs[k].float()
                errors[x, y] = proof.token_errors(total, out, seen.valid)["max_rel"]
        per_layer.append(errors)
    shared = set(per_layer[0]).intersection(*per_layer[1:]) if per_layer else set()
    found = [
        Candidate([x] * n, [y] * n, [errors[x, y] for errors in per_layer], _looks(x, y))
        for x, y in shared
    ]
    if all(per_layer):
        best = [min(errors, key=lambda p, e=errors: (e[p], -_looks(*p))) for errors in per_layer]
        mixed = Candidate(
            [x for x, _ in best],
            [y for _, y in best],
            [errors[p] for errors, p in zip(per_layer, best, strict=True)],
            min(_looks(*p) for p in best),
        )
        attn, mlp = _ordered(seen, mixed.attn), _ordered(seen, mixed.mlp)
        if len(set(best)) > 1 and attn is not None and mlp is not None:
            mixed.order = (tuple(attn), tuple(mlp))
            found.append(mixed)
    return sorted(found, key=lambda c: (c.error, -c.looks_right, c.attn_out, c.mlp_out))


def mlp_input(seen: _Observed, cand: Candidate, limit: float) -> tuple[str, bool] | None:
    """``(mlp_in, parallel)``: in each layer, the first child after the attention site reading
    ``h + a`` (sequential), else the nearest child before the MLP site reading ``h`` (parallel);
    None where the layers disagree on parallel."""
    chosen, parallel = [], set()
    for k, (x, y) in enumerate(zip(cand.attn, cand.mlp, strict=True)):
        valid = seen.valid
        order = sorted(
            (name for name, c in seen.children.items() if c.calls[k] >= 1),
            key=lambda name: seen.children[name].orders[k],
        )
        h = seen.h_in[k]
        h_plus_a = h + seen.children[x].outputs[k]
        at_x, at_y = order.index(x), order.index(y)
        pick = next(
            (
                c
                for c in order[at_x + 1 : at_y + 1]
                if _close(seen.children[c].inputs[k], h_plus_a, valid, limit)
            ),
            None,
        )
        if pick is not None:
            chosen.append(pick)
            parallel.add(False)
            continue
        pick = next(
            (
                c
                for c in reversed(order[: at_y + 1])
                if _close(seen.children[c].inputs[k], h, valid, limit)
            ),
            None,
        )
        chosen.append(pick or y)
        parallel.add(pick is not None)
    if len(parallel) != 1:
        return None
    ordered = _ordered(seen, chosen)
    mlp_in = _alternatives(ordered) if ordered is not None else cand.mlp_out
    return mlp_in, parallel.pop()


def final_norm(model: nn.Module, seen: _Observed, limit: float) -> str | None:
    """The module outside the layers that reads the last layer's output (norm-like names first);
    ``""`` where the unembedding reads it itself; None if nothing does."""
    last = seen.h_out[-1]
    calls: dict[str, int] = {}
    for path, _, _ in seen.outside:
        calls[path] = calls.get(path, 0) + 1
    readers = [  # a module called twice (NanoChat's one norm, also on the embeddings) would stop
        (path, module)  # a trace that ends at the final norm before the layers ran
        for path, module, value in seen.outside
        if calls[path] == 1 and _close(value, last, seen.valid, limit)
    ]
    normish = [
        path
        for path, module in readers
        if NORM_LIKE.search(path.rsplit(".", 1)[-1]) or "norm" in type(module).__name__.lower()
    ]
    if normish or readers:
        return (normish or [path for path, _ in readers])[0]
    if _close(seen.head_input, last, seen.valid, limit):
        return ""  # no final norm: the head reads the last layer's output (GPT-1)
    return None


@torch.no_grad()
def packs(bound: BoundAdapter, traced: Trace, limit: float) -> bool:
    """Whether a packed sequence (engine/prefix_packing.py: a prompt plus its suffixes from later
    split points) replays to the prompt's clean residuals, on ``traced`` (the proof's trace of
    the probe): a mixer that carries state along the sequence (state-space, convolution) reads
    the packed suffixes wrong, and is not packed."""
    length = traced.lengths[0]
    try:
        packed = pack_prompt(bound, traced, 0, length, [length // 2, length // 4])
        if packed is None:
            return True  # declined anyway: its layer arguments are not understood
        final = replay(bound, packed.trace, 0, [0])
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        return False
    expected = traced.resid[-1, 0, packed.positions].unsqueeze(0)
    valid = torch.ones(expected.shape[:2], dtype=torch.bool, device=expected.device)
    return proof.token_errors(final, expected, valid)["max_rel"] <= limit


def _site_text(cand: Candidate) -> str:
    return f"attn_out={cand.attn_out!r}, mlp_out={cand.mlp_out!r}"


@torch.no_grad()
def discover(
    model: nn.Module,
    vocab: int,
    *,
    name: str = "the model",
    quantized: bool = False,
    max_len: int | None = None,
) -> tuple[BoundAdapter, dict]:
    """Find and prove an adapter for ``model`` (see the module's docstring): the bound adapter
    and the proof's record, or one line refusing the model."""
    config = model.config
    model_type = str(getattr(config, "model_type", None) or type(model).__name__)
    if model.get_output_embeddings() is None:
        raise unsupported(model, "it has no output embedding (get_output_embeddings() is None)")
    layers_path = find_layers(model)
    if layers_path is None:
        raise unsupported(
            model, f"no list of {n_layers_of(model)} decoder layers found in its module tree"
        )
    limit = proof.tolerance(model.get_input_embeddings().weight.dtype, quantized)
    try:
        seen = observe(model, layers_path, proof.probe_batch(vocab, max_len))
    except (RuntimeError, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        if isinstance(exc, torch.OutOfMemoryError):
            raise
        first = first_line(exc, 120)
        raise unsupported(model, f"its probe pass failed ({type(exc).__name__}: {first})") from exc
    if any(h is None for h in (*seen.h_in, *seen.h_out)):
        raise unsupported(model, f"not every layer of {layers_path} ran in its forward pass")
    shape = tuple(seen.valid.shape)
    odd = next((h for h in (*seen.h_in, *seen.h_out) if tuple(h.shape[:2]) != shape), None)
    if odd is not None:  # flattened tokens or positions the model adds (CPM-Ant's prompt)
        raise unsupported(
            model,
            f"its layers see hidden states of shape {list(odd.shape)} for a probe of "
            f"{list(shape)} tokens, not one row per prompt and one position per token",
        )
    norm = final_norm(model, seen, limit)
    if norm is None:
        raise unsupported(model, "no final norm found (no module reads the last layer's output)")
    ranked = candidates(seen)
    if not ranked:
        raise unsupported(
            model,
            f"no two children of its decoder layers ({layers_path}) run once per layer with "
            f"residual-shaped outputs",
        )
    failures: list[tuple[Candidate, proof.ProofError]] = []
    for cand in [c for c in ranked if c.error <= NEAR * limit][:MAX_PROVEN]:
        found = mlp_input(seen, cand, limit)
        if found is None:
            continue
        mlp_in, parallel = found
        adapter = Adapter(
            family=model_type,
            model_types=(model_type,),
            layers=layers_path,
            final_norm=norm,
            attn_out=cand.attn_out,
            mlp_out=cand.mlp_out,
            mlp_in=mlp_in,
            parallel=parallel,
        )
        bound = BoundAdapter(model, adapter)
        try:
            record, traced = proof.prove_traced(
                bound, vocab, name=name, quantized=quantized, max_len=max_len
            )
        except proof.ProofError as exc:
            failures.append((cand, exc))
            continue
        if not packs(bound, traced, limit):
            bound = BoundAdapter(model, dataclasses.replace(adapter, packing=False))
        return bound, {**record, "packing": bound.spec.packing}
    if failures:
        cand, exc = failures[0]
        where = "the head" if exc.layer is None else f"layer {exc.layer}"
        size = "" if exc.error is None else f", relative error {exc.error:.3g}"
        why = (
            f"the best candidate ({_site_text(cand)}) adds up but fails the load-time proof's "
            f"{exc.check} check at {where}{size}"
        )
    else:
        best = ranked[0]
        why = (
            f"no two children of a decoder layer add up to its output; the best candidate "
            f"({_site_text(best)}) misses at layer {best.worst_layer} by relative error "
            f"{best.error:.3g} (> {limit:g})"
        )
    raise unsupported(model, why)


def bind(
    model: nn.Module,
    adapter: Adapter | None,
    vocab: int,
    *,
    name: str,
    check: bool = True,
    quantized: bool = False,
    max_len: int | None = None,
) -> tuple[BoundAdapter, dict]:
    """The model's adapter, bound and proven: ``adapter`` if given, else a registered one, the
    table's (unless the model's modules are laid out otherwise, as in a multimodal wrapper of a
    table family), or one discovered now. Returns it and the ``load_check`` record (with ``adapter:
    {family, source}``). ``check=False`` skips the proof, except for a discovery (which is the
    proof); a type discovered earlier in the session was proven then, and is skipped like a
    registered adapter."""
    if adapter is not None:
        spec, source = adapter, "registered"
    else:
        found = lookup_adapter(model)
        spec, source = found if found else (None, "discovered")
    bound = None
    if spec is not None:
        try:
            bound = BoundAdapter(model, spec)
        except DepthscopeError:  # the table's family, another layout (a multimodal wrapper)
            if source != "table":
                raise
            source = "discovered"
    if bound is None:
        bound, record = discover(model, vocab, name=name, quantized=quantized, max_len=max_len)
        remember_discovered(bound.spec)
    else:
        record = (
            proof.prove(bound, vocab, name=name, quantized=quantized, max_len=max_len)
            if check
            else proof.skipped()
        )
    return bound, {**record, "adapter": {"family": bound.family, "source": source}}
