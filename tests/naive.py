"""Deliberately naive reference implementations: one full forward pass per intervention, hooks only.

Nothing here uses depthscope's engine (trace/replay/interventions); it only borrows the adapter to
know which modules to hook and the model's head to read logits. Written for clarity, not speed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from depthscope.models.adapters import first_tensor


def _replace(output, value):
    return (value, *output[1:]) if isinstance(output, tuple) else value


def forward(lm, ids: list[int], edits: list = ()) -> tuple[list, list, torch.Tensor]:
    """Full forward pass; ``edits`` are (module, hook) pairs registered BEFORE the capture hooks.

    Returns per-layer inputs, per-layer outputs (as passed on) and the logits ``[T, V]``.
    """
    adapter = lm.adapter
    inputs, outputs = {}, {}
    handles = [module.register_forward_hook(hook) for module, hook in edits]
    for index, layer in enumerate(adapter.layers):

        def pre(module, args, kwargs, index=index):
            inputs[index] = (args[0] if args else kwargs["hidden_states"]).clone()

        def post(module, args, output, index=index):
            outputs[index] = first_tensor(output).clone()

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(layer.register_forward_hook(post))
    try:
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0]
    finally:
        for h in handles:
            h.remove()
    n = adapter.n_layers
    return [inputs[i][0] for i in range(n)], [outputs[i][0] for i in range(n)], logits


def positions(T: int, start: int, stop: int) -> torch.Tensor:
    mask = torch.zeros(T, dtype=torch.bool)
    mask[start:stop] = True
    return mask


def knockout_edit(lm, part: str, layer: int, mask: torch.Tensor):
    adapter = lm.adapter
    if part == "layer":

        def hook(module, args, output):
            h_in = args[0]
            new = torch.where(mask[None, :, None], h_in, first_tensor(output))
            return _replace(output, new)

        return adapter.layers[layer], hook
    module = adapter.attn_out[layer] if part == "attention" else adapter.mlp_out[layer]

    def zero(module, args, output):
        value = first_tensor(output)
        return _replace(output, torch.where(mask[None, :, None], torch.zeros_like(value), value))

    return module, zero


def rel_change(clean_c, new_c, measured):
    rel = (clean_c - new_c).norm(dim=-1) / clean_c.norm(dim=-1).clamp_min(1e-6)
    return rel[measured].max().item() if measured.any() else 0.0


def _naive_skips(lm, ids: list[int], part: str, front: int, split: int | None, reduce):
    """Skip each layer in its own full forward pass; ``reduce`` folds a per-position change over
    the measured positions. Effect ``[L, L]``, output change ``[L]``, positions measured."""
    T, L = len(ids), lm.n_layers
    ins, outs, logits = forward(lm, ids)
    clean_c = [o - i for i, o in zip(ins, outs, strict=True)]
    clean_p = logits.softmax(-1)
    intervened = positions(T, front, T if split is None else split)
    measured = positions(T, 0 if split is None else split, T)
    effect = torch.zeros(L, L)
    out_change = torch.zeros(L)
    if not measured.any():
        return effect, out_change, 0
    for s in range(L):
        v_ins, v_outs, v_logits = forward(lm, ids, [knockout_edit(lm, part, s, intervened)])
        for layer in range(L):
            new_c = v_outs[layer] - v_ins[layer]
            rel = (clean_c[layer] - new_c).norm(dim=-1) / clean_c[layer].norm(dim=-1).clamp_min(
                1e-6
            )
            effect[s, layer] = reduce(rel[measured])
        out_change[s] = reduce((v_logits.softmax(-1) - clean_p).norm(dim=-1)[measured])
    return effect, out_change, int(measured.sum())


def naive_effects(lm, ids: list[int], part: str, front: int, split: int | None):
    """Effect matrix [L, L] and output change [L] for one prompt and split point (paper §3.2)."""
    effect, out_change, _ = _naive_skips(lm, ids, part, front, split, torch.max)
    return effect, out_change


def naive_position_sums(lm, ids: list[int], part: str, front: int, split: int | None):
    """Like :func:`naive_effects`, summed instead of maxed over the measured positions: effect
    ``[L, L]``, output change ``[L]`` and the number of positions measured."""
    return _naive_skips(lm, ids, part, front, split, torch.sum)


def naive_local(lm, ids: list[int], front: int, split: int | None):
    """Local effect matrix [L, L] (paper §3.4): every layer >= s reads the clean residual minus c_s."""
    T, L = len(ids), lm.n_layers
    ins, outs, _ = forward(lm, ids)
    clean_c = [o - i for i, o in zip(ins, outs, strict=True)]
    intervened = positions(T, front, T if split is None else split)
    measured = positions(T, 0 if split is None else split, T)
    effect = torch.zeros(L, L)
    for s in range(L):
        recomputed = {}
        edits = []
        for i in range(s, L):

            def hook(module, args, output, i=i, s=s, recomputed=recomputed):
                recomputed[i] = (first_tensor(output) - args[0])[0].clone()
                new = outs[i] - torch.where(
                    intervened[:, None], clean_c[s], torch.zeros_like(clean_c[s])
                )
                return _replace(output, new[None])

            edits.append((lm.adapter.layers[i], hook))
        forward(lm, ids, edits)
        for i in range(s, L):
            effect[s, i] = rel_change(clean_c[i], recomputed[i], measured)
    return effect


def naive_contribution_tokens(lm, ids: list[int]) -> dict:
    """Per-token quantities of paper §3.1 for one prompt: {name: [L, T]}."""
    adapter = lm.adapter
    attn, mlp = {}, {}
    handles = []
    for layer in range(adapter.n_layers):
        handles.append(
            adapter.attn_out[layer].register_forward_hook(
                lambda m, a, o, layer=layer: attn.__setitem__(layer, first_tensor(o)[0].clone())
            )
        )
        handles.append(
            adapter.mlp_out[layer].register_forward_hook(
                lambda m, a, o, layer=layer: mlp.__setitem__(layer, first_tensor(o)[0].clone())
            )
        )
    try:
        ins, outs, _ = forward(lm, ids)
    finally:
        for h in handles:
            h.remove()
    rows = {
        k: []
        for k in (
            "rel_att",
            "rel_mlp",
            "rel_layer",
            "cos_att",
            "cos_mlp",
            "cos_layer",
            "cos_io",
            "norm_att",
            "norm_mlp",
            "norm_resid",
        )
    }
    for layer in range(adapter.n_layers):
        h, a, m, out = ins[layer], attn[layer], mlp[layer], outs[layer]
        base = h if adapter.parallel else h + a
        rows["rel_att"].append(a.norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-6))
        rows["rel_mlp"].append(m.norm(dim=-1) / base.norm(dim=-1).clamp_min(1e-6))
        rows["rel_layer"].append((out - h).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-6))
        rows["cos_att"].append(F.cosine_similarity(a, h, dim=-1))
        rows["cos_mlp"].append(F.cosine_similarity(m, base, dim=-1))
        rows["cos_layer"].append(F.cosine_similarity(out - h, h, dim=-1))
        rows["cos_io"].append(F.cosine_similarity(out, h, dim=-1))
        rows["norm_att"].append(a.norm(dim=-1))
        rows["norm_mlp"].append(m.norm(dim=-1))
        rows["norm_resid"].append(h.norm(dim=-1))
    return {k: torch.stack(v) for k, v in rows.items()}


def naive_logit_lens(lm, ids: list[int], k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-layer token-mean KL(lens || final) and top-k overlap for one prompt."""
    ins, _, logits = forward(lm, ids)
    final = logits.log_softmax(-1)
    kls, overlaps = [], []
    for h in ins:
        lens = lm.adapter.logits(h).log_softmax(-1)
        kls.append((lens.exp() * (lens - final)).sum(-1).mean())
        per_token = []
        for p in range(len(ids)):
            a = set(lens[p].topk(k).indices.tolist())
            b = set(final[p].topk(k).indices.tolist())
            per_token.append(len(a & b) / k)
        overlaps.append(sum(per_token) / len(per_token))
    return torch.stack(kls), torch.tensor(overlaps)


def naive_erasure(lm, ids: list[int], answer_length: int, means: torch.Tensor) -> torch.Tensor:
    """E[l, t] (residual erasure, paper §3.5) with one full forward pass per (boundary, position)."""
    T, L = len(ids), lm.n_layers
    _, _, logits = forward(lm, ids)
    clean = logits.softmax(-1)
    answer = slice(T - answer_length - 1, T - 1)
    effect = torch.zeros(L + 1, T)
    for boundary in range(L + 1):
        module = lm.adapter.layers[boundary] if boundary < L else lm.adapter.final_norm
        for t in range(T):

            def pre(module, args, boundary=boundary, t=t):
                hidden = args[0].clone()
                hidden[:, t] = means[boundary]
                return (hidden, *args[1:])

            handle = module.register_forward_pre_hook(pre)
            try:
                with torch.no_grad():
                    new = lm.model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)
            finally:
                handle.remove()
            effect[boundary, t] = (new[answer] - clean[answer]).norm(dim=-1).max()
    return effect


def naive_mean_residuals(lm, sequences: list[list[int]]) -> torch.Tensor:
    """Token-mean residual at every boundary over prompts run one at a time: [L+1, d]."""
    total, count = None, 0
    for ids in sequences:
        ins, outs, _ = forward(lm, ids)
        stacked = torch.stack([*ins, outs[-1]])  # [L+1, T, d]
        total = stacked.sum(1) if total is None else total + stacked.sum(1)
        count += len(ids)
    return total / count


def answer_probability(logits: torch.Tensor, ids: list[int], answer_length: int) -> torch.Tensor:
    """F: the summed teacher-forced probabilities of the last ``answer_length`` tokens of ``ids``."""
    T = len(ids)
    answer_ids = torch.tensor(ids[T - answer_length :])
    probs = logits[torch.arange(T - answer_length - 1, T - 1)].softmax(-1)
    return probs[torch.arange(answer_length), answer_ids].sum()


def naive_path_terms(lm, ids: list[int], answer_length: int, target: str, layer: int, ratios):
    """Per ratio r: F(x_r) and Σ_d ∂F/∂x_r[p,d]·(x[p,d] − x'[d]) per position, one full forward
    and backward pass each (hooks only), for any quadrature rule's nodes."""
    adapter = lm.adapter
    module = {"layer": adapter.layers, "attention": adapter.attn_out, "mlp": adapter.mlp_out}[
        target
    ][layer]
    captured = {}
    handle = module.register_forward_hook(
        lambda m, a, o: captured.__setitem__("x", first_tensor(o)[0].clone())
    )
    try:
        forward(lm, ids)
    finally:
        handle.remove()
    x = captured["x"]
    delta = x - x.mean(0, keepdim=True)
    values, terms = [], []
    for r in ratios:
        xr = (x - delta + float(r) * delta).clone().requires_grad_(True)
        handle = module.register_forward_hook(lambda m, a, o, xr=xr: _replace(o, xr[None]))
        try:
            with torch.enable_grad():
                logits = lm.model(input_ids=torch.tensor([ids])).logits[0]
                objective = answer_probability(logits, ids, answer_length)
                (grad,) = torch.autograd.grad(objective, xr)
        finally:
            handle.remove()
        values.append(float(objective.detach()))
        terms.append((grad * delta).sum(-1))
    return values, torch.stack(terms)


def naive_igrad(lm, ids: list[int], answer_length: int, target: str, layer: int, steps: int):
    """IG over positions for one layer by the paper's left Riemann sum, one interpolation step
    (full forward + backward) at a time; also F(x) and F(x')."""
    ratios = [step / steps for step in range(steps)]
    values, terms = naive_path_terms(lm, ids, answer_length, target, layer, ratios)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0]
    f_input = float(answer_probability(logits, ids, answer_length))
    return terms.sum(0) / steps, f_input, values[0]
