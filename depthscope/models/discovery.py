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

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from depthscope.core.errors import DepthscopeError
from depthscope.engine import proof
from depthscope.models.adapters import (
    Adapter,
    BoundAdapter,
    lookup_adapter,
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
    inputs: list = field(default_factory=list)  # per layer: first tensor input (None if absent)
    outputs: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    order: float = float("inf")  # call position within layer 0


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


def _get(root: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        root = getattr(root, part)
    return root


@torch.no_grad()
def observe(model: nn.Module, layers_path: str, batch) -> _Observed:
    """One probe forward pass with every layer's direct children hooked (copies kept, so a
    model that edits a child's output in place later cannot change what was seen)."""
    layers = list(_get(model, layers_path))
    n = len(layers)
    h_in: list = [None] * n
    h_out: list = [None] * n
    children: dict[str, _Child] = {}
    outside: list = []
    counter = [0]
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
            record = children.setdefault(name, _Child())
            while len(record.calls) <= index:
                record.calls.append(0)
                record.inputs.append(None)
                record.outputs.append(None)

            def child_pre(module, args, kwargs, index=index, record=record):
                record.calls[index] += 1
                if record.calls[index] == 1:
                    record.inputs[index] = keep(_first_input(args, kwargs))
                if index == 0 and record.order == float("inf"):
                    counter[0] += 1
                    record.order = counter[0]

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
    for record in children.values():  # a child that does not exist in every layer
        while len(record.calls) < n:
            record.calls.append(0)
            record.inputs.append(None)
            record.outputs.append(None)
    return _Observed(h_in, h_out, children, outside, batch.valid, head_input[0])


def _close(actual, expected, valid, limit: float) -> bool:
    if actual is None or expected is None or actual.shape != expected.shape:
        return False
    return proof.token_errors(actual, expected, valid)["max_rel"] <= limit


@dataclass
class Candidate:
    attn_out: str
    mlp_out: str
    errors: list  # per layer: relative error of h + a + m against the layer's output
    looks_right: int  # names that look like attention then MLP (or norms): 0-2

    @property
    def worst_layer(self) -> int:
        return max(range(len(self.errors)), key=lambda i: self.errors[i])

    @property
    def error(self) -> float:
        return max(self.errors)


def candidates(seen: _Observed) -> list[Candidate]:
    """Every pair of children that run once per layer with residual-shaped outputs, ranked by how
    far ``h + a + m`` is from each layer's output (then by how their names look)."""
    names = [
        name
        for name, child in sorted(seen.children.items(), key=lambda kv: kv[1].order)
        if all(calls == 1 for calls in child.calls)
        and all(
            out is not None and h is not None and out.shape == h.shape
            for out, h in zip(child.outputs, seen.h_in, strict=True)
        )
    ]
    found = []
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            a, m = seen.children[x].outputs, seen.children[y].outputs
            errors = [
                proof.token_errors(h.float() + a[k].float() + m[k].float(), out, seen.valid)[
                    "max_rel"
                ]
                for k, (h, out) in enumerate(zip(seen.h_in, seen.h_out, strict=True))
            ]
            looks = bool(ATTENTION_LIKE.search(x) or NORM_LIKE.search(x)) + bool(
                MLP_LIKE.search(y) or NORM_LIKE.search(y)
            )
            found.append(Candidate(x, y, errors, looks))
    return sorted(found, key=lambda c: (c.error, -c.looks_right))


def mlp_input(seen: _Observed, cand: Candidate, limit: float) -> tuple[str, bool]:
    """``(mlp_in, parallel)``: the first child after the attention site reading ``h + a``
    (sequential), else the nearest child before the MLP site reading ``h`` (parallel)."""
    order = sorted(seen.children, key=lambda name: seen.children[name].order)
    attn = seen.children[cand.attn_out]
    mlp_at = order.index(cand.mlp_out)

    def reads(name: str, expected: list) -> bool:
        inputs = seen.children[name].inputs
        return all(_close(inputs[k], expected[k], seen.valid, limit) for k in range(len(seen.h_in)))

    h_plus_a = [h + a for h, a in zip(seen.h_in, attn.outputs, strict=True)]
    for name in order[order.index(cand.attn_out) + 1 : mlp_at + 1]:
        if reads(name, h_plus_a):
            return name, False
    for name in reversed(order[: mlp_at + 1]):
        if reads(name, seen.h_in):
            return name, True
    return cand.mlp_out, False


def final_norm(model: nn.Module, seen: _Observed, limit: float) -> str | None:
    """The module outside the layers that reads the last layer's output (norm-like names first);
    ``""`` where the unembedding reads it itself; None if nothing does."""
    last = seen.h_out[-1]
    readers = [
        (path, module)
        for path, module, value in seen.outside
        if _close(value, last, seen.valid, limit)
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
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
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
        mlp_in, parallel = mlp_input(seen, cand, limit)
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
            record = proof.prove(bound, vocab, name=name, quantized=quantized, max_len=max_len)
        except proof.ProofError as exc:
            failures.append((cand, exc))
            continue
        return bound, record
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
    proof)."""
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
            else proof.skipped("--no-load-check / load_check=False")
        )
    return bound, {**record, "adapter": {"family": bound.family, "source": source}}
