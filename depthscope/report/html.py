"""A single self-contained HTML page per run: what ran, key numbers, and every figure."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from depthscope.results import Result, atomic_write_bytes

ORDER = (
    "contributions",
    "current-effects",
    "future-effects",
    "logit-lens",
    "local-effects",
    "igrad",
    "erasure",
    "depth-score",
    "linear-map",
)


def _halves(values: np.ndarray) -> tuple[float, float]:
    half = len(values) // 2
    return float(np.mean(values[:half])), float(np.mean(values[half:]))


def key_numbers(result: Result) -> list[str]:
    """A few numbers that summarise a result in words (the figures carry the rest)."""
    d = result.data
    out = []
    if result.analysis == "contributions":
        rel = np.asarray(d["rel_layer"], dtype=float)
        first, second = _halves(rel[1:])
        out.append(
            f"mean relative contribution ‖a+m‖/‖h‖: first half {first:.3f}, second half {second:.3f}"
        )
        cos = np.asarray(d["cos_layer"], dtype=float)
        out.append(
            f"mean cos(a+m, h): first half {_halves(cos)[0]:.3f}, second half {_halves(cos)[1]:.3f}"
        )
    elif result.analysis in ("current-effects", "future-effects"):
        effect = np.asarray(d["effect"], dtype=float)
        n = effect.shape[0]
        later = [effect[s, s + 1 :].mean() for s in range(n - 1)]
        first, second = _halves(np.asarray(later))
        out.append(
            f"mean effect of skipping a layer on later layers: first half {first:.3f}, second half {second:.3f}"
        )
        output = np.asarray(d["output_change"], dtype=float)
        first, second = _halves(output)
        out.append(f"output change when skipping: first half {first:.3f}, second half {second:.3f}")
    elif result.analysis == "logit-lens":
        overlap = np.asarray(d["topk_overlap"], dtype=float)
        above = np.nonzero(overlap > 0.5)[0]
        where = f"layer {int(above[0])} of {len(overlap)}" if len(above) else "never"
        out.append(f"top-{result.settings.get('k', 5)} overlap first exceeds 0.5 at {where}")
    elif result.analysis == "depth-score":
        for level, entry in d["levels"].items():
            out.append(
                f"level {level}: depth score {entry['depth_score_layer']:.2f} (layer effects), "
                f"{entry['depth_score_output']:.2f} (output), accuracy {entry['accuracy']:.0%}, n={entry['n_examples']}"
            )
    elif result.analysis == "linear-map":
        out.append(f"best target per source boundary: {d['best_target']}")
    return out


def _figure_tags(run_dir: Path, analysis: str) -> str:
    tags = []
    for png in sorted((run_dir / "figures").glob(f"{analysis}_*.png")):
        data = base64.b64encode(png.read_bytes()).decode()
        tags.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{png.stem}"><figcaption>{png.stem}</figcaption></figure>'
        )
    return "\n".join(tags)


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from ``run.json``, the results and the figures."""
    run_dir = Path(run_dir)
    run = {}
    if (run_dir / "run.json").exists():
        run = json.loads((run_dir / "run.json").read_text())
    results = {p.stem: Result.load(p) for p in (run_dir / "results").glob("*.json")}
    model = run.get("model") or next(iter(results.values())).model if results else {}
    parts = [
        "<!doctype html><meta charset='utf-8'><title>depthscope report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}img{max-width:100%}"
        "figure{margin:1em 0}td,th{padding:2px 8px;text-align:left}</style>",
        f"<h1>depthscope: {html.escape(str(model.get('name', 'model')))}</h1>",
        "<table>",
    ]
    rows = {
        "model": f"{model.get('name')} ({model.get('family')}, {model.get('n_layers')} layers, d={model.get('d_model')})",
        "source": model.get("source"),
        "dtype / device": f"{model.get('dtype')} / {model.get('device')}",
        "data": (run.get("data") or {}).get("source"),
        "prompts / tokens": f"{run.get('n_prompts')} / {run.get('n_tokens')}",
        "seed": run.get("seed"),
    }
    parts += [f"<tr><th>{k}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows.items()]
    parts.append("</table>")
    timings = run.get("timings", {})
    for name in sorted(results, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        result = results[name]
        seconds = timings.get(name, result.extra.get("seconds"))
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(
            f"<p>{result.n_prompts} prompts, {result.n_tokens} tokens"
            + (f", {seconds:.1f} s" if seconds else "")
            + "</p>"
        )
        parts.append(
            "<p>settings: <code>" + html.escape(json.dumps(result.settings)) + "</code></p>"
        )
        numbers = key_numbers(result)
        if numbers:
            parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in numbers) + "</ul>")
        parts.append(_figure_tags(run_dir, name))
    path = run_dir / "report.html"
    atomic_write_bytes(path, "\n".join(parts).encode())
    return path
