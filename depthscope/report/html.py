"""One self-contained ``report.html`` per run directory: what ran, key numbers, every figure.

The page embeds the PNGs as base64, so it can be mailed or archived alone. It reads only saved
files (``run.json``, ``results/*.json``, ``figures/``); figures missing or older than their
result are drawn first. ``run.json`` is optional and every key in it may be missing.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from depthscope.errors import DepthscopeError
from depthscope.report.figures import (
    DRAWERS,
    plot_result,
    read_index,
    result_files,
    warn,
)
from depthscope.report.figures_common import finite_max, finite_mean, finite_min
from depthscope.report.figures_layers import effect_parts
from depthscope.report.figures_tokens import igrad_targets
from depthscope.results import PAPER_ORDER, Result, atomic_write_bytes

TITLES = {
    "contributions": "Residual norms, relative contributions and cosines (E2)",
    "current-effects": "Skipping a layer: effect on later layers and outputs, all tokens (E3)",
    "future-effects": "Skipping a layer: effect on future tokens (E4)",
    "logit-lens": "Logit lens (E5)",
    "local-effects": "Local (direct) layer-to-layer effects (E6)",
    "igrad": "Integrated gradients over layers × tokens (E7)",
    "erasure": "Residual erasure over layers × tokens (E8)",
    "depth-score": "Depth score vs problem complexity (E9)",
    "linear-map": "Linear maps from a shallow to a deep model (E10)",
}
STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:left;
vertical-align:top;border-bottom:1px solid #eee}th{font-weight:600}
code{font-size:.9em;background:#f4f4f4;padding:0 3px}
figure{display:inline-block;margin:.6em .6em .6em 0;vertical-align:top}
figure.half{max-width:48%}figure.wide{max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8em;color:#555}
.numbers li{margin:.2em 0}.note{color:#a33}
"""


# ---------------------------------------------------------------- key numbers


def _halves(values: np.ndarray) -> tuple[float, float]:
    """Mean of the first and second half (NaN-aware; an odd middle goes to the second half)."""
    half = len(values) // 2
    first, second = values[:half], values[half:]
    return finite_mean(first), finite_mean(second)


def contribution_numbers(result: Result) -> list[str]:
    """Where the relative contribution collapses, how the cosine changes sign."""
    rel = np.asarray(result.data["rel_layer"], dtype=float)
    n, half = len(rel), len(rel) // 2
    lines = []
    # layer 0 (reading the raw embedding) is usually an outlier, so the reference starts at 1
    ref, second = finite_mean(rel[1:half]), finite_mean(rel[half:])
    if np.isfinite(ref):
        below = [i for i in range(1, n) if rel[i] < 0.5 * ref]
        where = f"at layer {below[0]}" if below else "never"
        lines.append(
            f"relative contribution ‖a+m‖/‖h‖: mean {ref:.3f} over layers 1–{half - 1}, "
            f"{second:.3f} over {half}–{n - 1}; drops below half of the first-half mean {where}"
        )
    cos = np.asarray(result.data["cos_layer"], dtype=float)
    first, second = _halves(cos)
    lines.append(
        f"cos(a+m, h): first half {first:.3f}, second half {second:.3f}; "
        f"negative (erasing) at {int(np.sum(cos < 0))} of {n} layers"
    )
    norms = np.asarray(result.data.get("max_norm_resid", []), dtype=float)
    if norms.size and np.isfinite(norms).any():
        top = int(np.nanargmax(norms))
        lines.append(f"largest residual norm {norms[top]:.4g} (entering layer {top})")
    return lines


def later_layer_effect(effect: np.ndarray) -> np.ndarray:
    """Mean effect of skipping ``s`` on the layers after it (NaN for the last layer)."""
    n = effect.shape[0]
    return np.array([finite_mean(effect[s, s + 1 :]) for s in range(n)])


def effects_numbers(result: Result) -> list[str]:
    """First- vs second-half importance for later layers and for the output, per part."""
    lines = []
    for part, block in effect_parts(result.data):
        effect = np.asarray(block["effect"], dtype=float)
        first, second = _halves(later_layer_effect(effect)[:-1])
        lines.append(
            f"{part}: mean effect on later layers when skipping a first-half vs second-half "
            f"layer: {first:.3f} vs {second:.3f}"
        )
        output = np.asarray(block["output_change"], dtype=float)
        if np.isfinite(output).any():
            top = int(np.nanargmax(output))
            o1, o2 = _halves(output)
            lines.append(
                f"{part}: output change, first vs second half: {o1:.3f} vs {o2:.3f}; "
                f"largest at layer {top} ({output[top]:.3f})"
            )
    return lines


def local_numbers(result: Result) -> list[str]:
    """The strongest direct dependencies between distinct layers."""
    lines = []
    for variant in ("current", "future"):
        if variant not in result.data:
            continue
        matrix = np.asarray(result.data[variant], dtype=float)
        upper = np.where(np.triu(np.ones_like(matrix, dtype=bool), k=1), matrix, np.nan)
        if not np.isfinite(upper).any():
            continue
        flat = np.argsort(np.nan_to_num(upper, nan=-np.inf), axis=None)[::-1][:3]
        pairs = [np.unravel_index(i, matrix.shape) for i in flat]
        shown = ", ".join(f"{s}→{t} ({matrix[s, t]:.2f})" for s, t in pairs)
        lines.append(f"{variant} tokens: strongest direct effects (skipped→affected) {shown}")
    return lines


def logit_lens_numbers(result: Result) -> list[str]:
    """When intermediate predictions start to agree with the final one."""
    k = result.settings.get("k", 5)
    lines = []
    overlap = np.asarray(result.data.get("topk_overlap", []), dtype=float)
    if overlap.size:
        above = np.nonzero(overlap > 0.5)[0]
        where = f"at layer {int(above[0])} of 0–{len(overlap) - 1}" if len(above) else "never"
        lines.append(f"top-{k} overlap with the final prediction first exceeds 0.5 {where}")
    kl = np.asarray(result.data.get("kl", []), dtype=float)
    if kl.size and np.isfinite(kl).any():
        peak = finite_max(kl)
        low = np.nonzero(kl < 0.5 * peak)[0]
        low = low[low > int(np.nanargmax(kl))]
        where = f"from layer {int(low[0])}" if len(low) else "never"
        lines.append(f"KL to the final distribution: max {peak:.3f}; below half of it {where}")
    return lines


def deepest_row(matrix: np.ndarray, answer_len: int | None, share: float = 0.1) -> int | None:
    """Deepest row where a prompt token (not column 0, not the answer) holds ``share`` of the max."""
    last = matrix.shape[1] - (answer_len or 1)
    columns = np.abs(matrix[:, 1:last])
    if columns.size == 0 or not np.isfinite(columns).any():
        return None
    threshold = share * finite_max(np.abs(matrix[:, 1:-1]), 0.0)
    rows = np.nonzero((np.nan_to_num(columns) >= threshold).any(axis=1))[0]
    return int(rows[-1]) if len(rows) and threshold > 0 else None


def _answer_len(data: dict, index: int) -> int | None:
    lengths = data.get("answer_tokens") or []
    return lengths[index] if index < len(lengths) else None


def token_map_numbers(result: Result, maps: list, noun: str) -> list[str]:
    """Per prompt: until which depth the prompt's tokens still matter for the answer."""
    prompts = result.data.get("prompts") or list(range(len(maps)))
    lines = []
    for index, matrix in enumerate(maps):
        matrix = np.asarray(matrix, dtype=float)
        row = deepest_row(matrix[:, :-1], _answer_len(result.data, index))
        depth = f"{noun} {row} of 0–{matrix.shape[0] - 1}" if row is not None else "nowhere"
        lines.append(
            f"prompt {prompts[index]}: prompt tokens (column 0 and answer excluded) keep ≥10% "
            f"of the map's maximum up to {depth}"
        )
    return lines


def igrad_numbers(result: Result) -> list[str]:
    targets = igrad_targets(result)
    if not targets:
        return []
    target, block = targets[0]
    lines = token_map_numbers(result, block["attribution"], "layer")
    if target != "layer":
        lines = [f"{line} (target: {target})" for line in lines]
    gaps, f_input = block.get("completeness_gap") or [], block.get("f_input") or []
    prompts = result.data.get("prompts") or list(range(len(gaps)))
    for index, gap in enumerate(gaps):
        worst = finite_max(np.abs(np.asarray(gap, dtype=float)))
        f_x = f" (F(x) = {f_input[index]:.3g})" if index < len(f_input) else ""
        lines.append(
            f"prompt {prompts[index]}: largest |F(x) − F(x') − ΣIG| over layers {worst:.3g}{f_x}"
        )
    return lines


def erasure_numbers(result: Result) -> list[str]:
    return token_map_numbers(result, result.data["effect"], "boundary")


def depth_score_numbers(result: Result) -> list[str]:
    lines = []
    for level, entry in result.data["levels"].items():
        layer, output = entry.get("depth_score_layer"), entry.get("depth_score_output")
        fmt = lambda v: f"{v:.2f}" if isinstance(v, int | float) else "n/a"  # noqa: E731
        accuracy = entry.get("accuracy")
        acc = f"{accuracy:.0%}" if isinstance(accuracy, int | float) else "n/a"
        lines.append(
            f"level {level}: depth score {fmt(layer)} from layer effects, {fmt(output)} from "
            f"output change (0-based); accuracy {acc}; n={entry.get('n_examples', '?')}"
        )
    return lines


def linear_map_numbers(result: Result) -> list[str]:
    from depthscope.report.figures_depth import best_targets

    rel = np.asarray(result.data["rel_err"], dtype=float)
    n_source, n_target = rel.shape[0] - 1, rel.shape[1] - 1
    best = best_targets(rel, result.data)[1:] / max(n_target, 1)
    depth = np.arange(1, n_source + 1) / max(n_source, 1)
    return [
        f"best target relative depth vs source relative depth: mean |difference| "
        f"{finite_mean(np.abs(best - depth)):.3f} (0 = perfect diagonal)",
        f"lowest relative error {finite_min(rel[1:, 1:]):.3f}, "
        f"highest {finite_max(rel[1:, 1:]):.3f} (embeddings excluded)",
    ]


NUMBERS: dict[str, Callable[[Result], list[str]]] = {
    "contributions": contribution_numbers,
    "current-effects": effects_numbers,
    "future-effects": effects_numbers,
    "local-effects": local_numbers,
    "logit-lens": logit_lens_numbers,
    "igrad": igrad_numbers,
    "erasure": erasure_numbers,
    "depth-score": depth_score_numbers,
    "linear-map": linear_map_numbers,
}


def key_numbers(result: Result) -> list[str]:
    """A few numbers that summarise a result in words (the figures carry the rest)."""
    summarise = NUMBERS.get(result.analysis)
    if summarise is None:
        return []
    try:
        return summarise(result)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        return [f"(key numbers unavailable: {type(exc).__name__}: {exc})"]


# ---------------------------------------------------------------- page parts


def esc(value: object) -> str:
    return html.escape(str(value))


def load_run(run_dir: Path) -> dict:
    """``run.json`` if present and valid, else {} (the report then relies on the results)."""
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return run if isinstance(run, dict) else {}


def _ordered(results: list[tuple[Path, Result]]) -> list[tuple[Path, Result]]:
    rank = {name: i for i, name in enumerate(PAPER_ORDER)}
    return sorted(results, key=lambda pr: (rank.get(pr[1].analysis, len(PAPER_ORDER)), pr[0].name))


def table(rows: list[tuple[str, object]]) -> str:
    cells = [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows if v not in (None, "")]
    return "<table>" + "".join(cells) + "</table>"


def identity_rows(run: dict, model: dict) -> list[tuple[str, object]]:
    data = run.get("data") if isinstance(run.get("data"), dict) else {}
    versions = run.get("versions") if isinstance(run.get("versions"), dict) else {}
    sha = model.get("file_sha256")
    return [
        ("model", model.get("name")),
        (
            "family / type",
            " / ".join(str(v) for v in (model.get("family"), model.get("model_type")) if v),
        ),
        (
            "layers, d_model",
            ", ".join(str(v) for v in (model.get("n_layers"), model.get("d_model")) if v),
        ),
        (
            "dtype / device",
            " / ".join(
                str(v) for v in (model.get("dtype"), run.get("device") or model.get("device")) if v
            ),
        ),
        ("source", model.get("source") or model.get("path")),
        ("revision", model.get("revision")),
        ("file sha256", sha),
        ("data", data.get("source")),
        (
            "prompts / tokens",
            f"{run['n_prompts']} / {run.get('n_tokens', '?')}" if "n_prompts" in run else None,
        ),
        ("seed", run.get("seed")),
        ("batch size", run.get("batch_size")),
        ("status", run.get("status")),
        (
            "started / finished",
            " / ".join(str(v) for v in (run.get("started"), run.get("finished")) if v),
        ),
        ("command", run.get("command")),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
    ]


def timing_table(run: dict, results: list[tuple[Path, Result]]) -> str:
    """Per analysis: status, prompts, tokens and seconds (run.json first, the result second)."""
    timings = run.get("timings") if isinstance(run.get("timings"), dict) else {}
    status = (
        run.get("status_by_analysis") if isinstance(run.get("status_by_analysis"), dict) else {}
    )
    rows = [
        "<tr><th>analysis</th><th>status</th><th>prompts</th><th>tokens</th><th>seconds</th></tr>"
    ]
    for _, result in results:
        name = result.analysis
        seconds = timings.get(name, result.extra.get("seconds"))
        shown = f"{seconds:.1f}" if isinstance(seconds, int | float) else "?"
        rows.append(
            f"<tr><td><a href='#{esc(name)}'>{esc(name)}</a></td><td>{esc(status.get(name, 'saved'))}"
            f"</td><td>{result.n_prompts}</td><td>{result.n_tokens}</td><td>{shown}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def ensure_figures(run_dir: Path, path: Path, result: Result) -> list[Path]:
    """The result's PNGs in drawing order, redrawn first if missing or older than the result."""
    figures = run_dir / "figures"
    stems = read_index(figures).get(result.analysis)
    pngs = [figures / f"{stem}.png" for stem in stems or []]
    stale = stems is None or any(
        not png.exists() or png.stat().st_mtime < path.stat().st_mtime for png in pngs
    )
    if stale:
        pngs = [p for p in plot_result(result, figures) if p.suffix == ".png"]
    return pngs


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the PNG header (0, 0 if it is not a PNG)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or len(data) < 24:
        return 0, 0
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def figure_tag(png: Path) -> str:
    """The PNG inlined as base64; wide maps get a full row, the rest sit two per row."""
    raw = png.read_bytes()
    width, height = png_size(raw)
    wide = width > 1000 or width > 1.8 * max(height, 1)
    data = base64.b64encode(raw).decode("ascii")
    pdf = png.with_suffix(".pdf")
    link = f" · <a href='figures/{esc(pdf.name)}'>pdf</a>" if pdf.exists() else ""
    return (
        f"<figure class='{'wide' if wide else 'half'}'>"
        f"<img src='data:image/png;base64,{data}' alt='{esc(png.stem)}'>"
        f"<figcaption>{esc(png.stem)}{link}</figcaption></figure>"
    )


def settings_line(result: Result) -> str:
    items = ", ".join(f"{k}={json.dumps(v)}" for k, v in result.settings.items())
    return f"<p>settings: <code>{esc(items or 'defaults')}</code></p>"


def analysis_section(run_dir: Path, path: Path, result: Result) -> str:
    name = result.analysis
    parts = [f"<h2 id='{esc(name)}'>{esc(TITLES.get(name, name))}</h2>"]
    parts.append(
        f"<p>{result.n_prompts} prompts, {result.n_tokens} tokens · "
        f"<code>results/{esc(path.name)}</code></p>"
    )
    parts.append(settings_line(result))
    skipped = result.data.get("skipped_prompts") if isinstance(result.data, dict) else None
    if skipped:
        parts.append(
            f"<p class='note'>skipped prompts (no usable split/answer): {esc(skipped)}</p>"
        )
    numbers = key_numbers(result)
    if numbers:
        parts.append(
            "<ul class='numbers'>" + "".join(f"<li>{esc(n)}</li>" for n in numbers) + "</ul>"
        )
    if name not in DRAWERS:
        parts.append("<p class='note'>no figures are defined for this analysis</p>")
        return "\n".join(parts)
    try:
        parts += [figure_tag(png) for png in ensure_figures(run_dir, path, result)]
    except DepthscopeError as exc:
        warn(f"{path.name}: {exc}")
        parts.append(f"<p class='note'>figures could not be drawn: {esc(exc)}</p>")
    return "\n".join(parts)


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from ``run.json``, the saved results and their figures."""
    run_dir = Path(run_dir)
    results = _ordered([(p, Result.load(p)) for p in result_files(run_dir)])
    run = load_run(run_dir)
    model = run.get("model") if isinstance(run.get("model"), dict) else results[0][1].model
    title = f"depthscope: {model.get('name', 'model')}"
    body = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        table(identity_rows(run, model)),
        "<h2>Analyses</h2>",
        timing_table(run, results),
    ]
    if not run:
        body.append("<p class='note'>no readable run.json; identity taken from the results</p>")
    body += [analysis_section(run_dir, path, result) for path, result in results]
    body.append("</body></html>")
    path = run_dir / "report.html"
    atomic_write_bytes(path, "\n".join(body).encode("utf-8"))
    return path
