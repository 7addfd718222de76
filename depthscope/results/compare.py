"""``depthscope compare RUN_DIR RUN_DIR [...]``: overlay runs of different models by relative depth.

The paper's claims are comparative (shallow vs deep models, §3.4): layer ``l`` of an ``L``-layer
model is drawn at relative depth ``x = l / L``. For each quantity one figure overlays every run;
``compare.json`` holds each run's profile at its own points and interpolated on a common grid
(101 points on [0, 1], linear, ``null`` outside the run's measured range) plus each run's verdict;
``compare.html`` puts the verdicts side by side above the figures. Runs whose analyses used
different conventions (settings) are refused; different data sources only warn.
"""

from __future__ import annotations

import base64
import html
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depthscope.analyses.catalog import cards
from depthscope.core.atomic_files import atomic_write_bytes, atomic_write_json
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.registry import card as card_of
from depthscope.core.result import Result, run_identity
from depthscope.core.run_folder import COMPARE_OUTPUTS, RunFolder, combined_identity
from depthscope.figures.common import new_figure, plain, save_figure, tidy
from depthscope.verdict.card import CARD_STYLE, summary_card_html
from depthscope.verdict.comparison import compare_summaries, row_line
from depthscope.verdict.summary import Summary, summarize

GRID = np.linspace(0.0, 1.0, 101)
# The seed picks prompts and split points (a data matter, warned about), never a convention.
IGNORED_SETTINGS = frozenset({"seed"})


@dataclass(frozen=True)
class Quantity:
    """A per-layer (or per-boundary) profile read from one analysis's saved result."""

    name: str
    analysis: str
    label: str
    read: Callable[[dict], np.ndarray]
    requires: str | None = None

    def offered_by(self, run: RunData) -> bool:
        result = run.results.get(self.analysis)
        return result is not None and (self.requires is None or self.requires in result.data)


def quantities() -> dict[str, Quantity]:
    """Every profile the registered cards offer, by name, in the paper's order."""
    return {
        p.name: Quantity(p.name, card.name, p.label, p.read, p.requires)
        for card in cards()
        for p in card.profiles
    }


@dataclass
class RunData:
    """One run directory's results, label and depth."""

    path: Path
    results: dict[str, Result]
    label: str = ""

    @property
    def model(self) -> str:
        first = next(iter(self.results.values()))
        return str(first.model.get("name") or self.path.name)

    @property
    def identity(self) -> dict:
        """The model the run folder belongs to (its owner, else what its results name)."""
        return run_identity(self.path, next(iter(self.results.values())))

    @property
    def n_layers(self) -> int:
        for result in self.results.values():
            value = result.model.get("n_layers")
            if isinstance(value, int) and value > 0:
                return value
        raise DepthscopeError(
            f"{self.path}: the results do not record the model's layer count; recompute them with "
            f"`depthscope analyze MODEL --out {self.path} --fresh`"
        )


def warn(message: str) -> None:
    print(f"depthscope: warning: {message}", file=sys.stderr)


def read_run(path: Path) -> RunData:
    """A run directory's results; one clear line if ``path`` is not a run."""
    path = Path(path)
    files = RunFolder(path).result_files() if path.is_dir() else []
    if not files:
        what = (
            "does not exist" if not path.exists() else "is not a run directory (no results/*.json)"
        )
        raise DepthscopeError(
            f"{path} {what}; pass run directories written by `depthscope analyze --out`"
        )
    results = {}
    for file in files:
        result = Result.load(file)
        results[result.analysis] = result
    return RunData(path, results)


def label_runs(runs: list[RunData]) -> None:
    """Model names, made unique with the directory name where two runs share a model."""
    names = [run.model for run in runs]
    for run, name in zip(runs, names, strict=True):
        run.label = name if names.count(name) == 1 else f"{name} ({run.path.name})"


def choose_quantities(runs: list[RunData], wanted: list[str] | None) -> list[Quantity]:
    """The requested quantities (all runs must have them) or, by default, those all runs have."""
    offered = quantities()
    if wanted:
        unknown = [name for name in wanted if name not in offered]
        if unknown:
            raise DepthscopeError(
                f"unknown quantity {', '.join(unknown)}; choose from {', '.join(offered)}"
            )
        chosen = [offered[name] for name in wanted]
        for q in chosen:
            for run in runs:
                if not q.offered_by(run):
                    raise DepthscopeError(
                        f"{run.path} has no {q.analysis} result (needed for {q.name}); run "
                        f"`depthscope analyze MODEL --analyses {q.analysis} --out {run.path}` first"
                    )
        return chosen
    chosen = []
    for q in offered.values():
        lacking = [run for run in runs if not q.offered_by(run)]
        if not lacking:
            chosen.append(q)
        elif len(lacking) < len(runs):
            warn(
                f"{q.name} left out: {', '.join(str(r.path) for r in lacking)} has no "
                f"{q.analysis} result (run `depthscope analyze MODEL --analyses {q.analysis} "
                f"--out {lacking[0].path}`)"
            )
    if not chosen:
        raise DepthscopeError(
            "the runs have no analysis in common to compare; run `depthscope analyze` with the "
            "same --analyses on each (e.g. the default five)"
        )
    return chosen


def _settings(result: Result) -> dict:
    card = card_of(result.analysis)
    ignored = IGNORED_SETTINGS | (card.settings_not_compared if card else frozenset())
    return {k: v for k, v in result.settings.items() if k not in ignored}


def check_comparable(runs: list[RunData], analyses: list[str]) -> None:
    """Refuse differing conventions (settings); warn about differing data, seeds, prompt counts."""
    first = runs[0]
    for analysis in analyses:
        reference = first.results[analysis]
        for run in runs[1:]:
            other = run.results[analysis]
            a, b = _settings(reference), _settings(other)
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    raise DepthscopeError(
                        f"{first.path} and {run.path} differ in the {analysis} setting {key} "
                        f"({a.get(key)!r} vs {b.get(key)!r}), so their profiles are not "
                        "comparable; "
                        f"rerun one with --set {key}=VALUE to match"
                    )
    for field_name, describe in (
        ("data_source", lambda r: r.extra.get("data_source")),
        ("seed", lambda r: r.settings.get("seed")),
        ("n_prompts", lambda r: r.n_prompts),
    ):
        for analysis in analyses:
            values = {run.label: describe(run.results[analysis]) for run in runs}
            if len({str(v) for v in values.values()}) > 1:
                shown = ", ".join(f"{label}: {value}" for label, value in values.items())
                warn(f"{analysis} was run with different {field_name.replace('_', ' ')} ({shown})")


def profile(run: RunData, quantity: Quantity) -> tuple[np.ndarray, np.ndarray]:
    """(relative depths l / L, values) of the finite points of one run's profile."""
    try:
        values = quantity.read(run.results[quantity.analysis].data)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DepthscopeError(
            f"{RunFolder(run.path).result(quantity.analysis)} has no usable data for {quantity.name} "
            f"({type(exc).__name__}: {exc}); rerun that analysis (with the layer part)"
        ) from None
    x = np.arange(values.size) / run.n_layers
    keep = np.isfinite(values)
    return x[keep], values[keep]


def on_grid(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Linear interpolation on :data:`GRID`; NaN outside ``[x_0, x_last]``."""
    if x.size == 0:
        return np.full(GRID.size, np.nan)
    grid = GRID
    values = np.interp(grid, x, y)
    values[(grid < x[0] - 1e-12) | (grid > x[-1] + 1e-12)] = np.nan
    return values


def draw(
    quantity: Quantity, runs: list[RunData], folder: Path, transitions: dict[str, float | None]
) -> list[Path]:
    """One curve per run at its layers' relative depths; its verdict's transition dotted."""

    fig, ax = new_figure(6, 3)
    for index, run in enumerate(runs):
        x, y = profile(run, quantity)
        label = plain(f"{run.label} (L={run.n_layers})")
        ax.plot(x, y, marker="o", markersize=3, color=f"C{index}", label=label)
        where = transitions.get(run.label)
        if where is not None:
            ax.axvline(where, color=f"C{index}", linestyle=":", linewidth=1)
    ax.set_xlabel("relative depth  l / L  (dotted: each run's transition)")
    ax.set_ylabel(plain(quantity.label))
    ax.set_xlim(-0.02, 1.0)
    ax.set_title(plain(f"{quantity.label}, by relative depth"), fontsize=9)
    ax.legend(fontsize=7, framealpha=0.8)
    ax.grid(alpha=0.3)
    return save_figure(tidy(fig), folder / f"compare_{quantity.name}")


def differences(runs: list[RunData], summaries: dict[str, Summary]) -> list[dict]:
    """Every run against the first: effective depths, then change points, each pair of runs
    tested together (:mod:`depthscope.verdict.comparison`)."""
    first = runs[0]
    rows = []
    for run in runs[1:]:
        rows += compare_summaries(
            summaries[first.label], summaries[run.label], (first.label, run.label)
        )
    return rows


def compare_runs(
    paths: list[Path], out: Path, wanted: list[str] | None = None, plots: bool = True
) -> dict:
    """Read, check, overlay; write ``out/compare.json``, ``out/compare.html``, ``out/figures``.

    ``out`` is checked before any run is read (writable, holding nothing of what compare writes
    that depthscope did not write), locked against a second command, and claimed for the runs'
    models: a comparison of other models is never written over (:mod:`depthscope.core.folders`).
    """
    if len(paths) < 2:
        raise DepthscopeError("compare needs at least two run directories")
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) < len(resolved):
        raise DepthscopeError("the same run directory is given twice; pass different runs")
    guard = OutputFolder(out, outputs=COMPARE_OUTPUTS)
    guard.check()
    with friendly_os_errors(out), guard.lock():
        return _compare(paths, guard, wanted, plots)


def _compare(paths: list[Path], guard: OutputFolder, wanted: list[str] | None, plots: bool) -> dict:
    runs = [read_run(p) for p in paths]
    label_runs(runs)
    quantities = choose_quantities(runs, wanted)
    check_comparable(runs, list(dict.fromkeys(q.analysis for q in quantities)))
    summaries = {run.label: summarize(run.path) for run in runs}
    doc = {
        "runs": [
            {
                "label": run.label,
                "run_dir": str(run.path),
                "model": run.model,
                "n_layers": run.n_layers,
                "data_source": {a: r.extra.get("data_source") for a, r in run.results.items()},
                "verdict": summaries[run.label].to_json(),
            }
            for run in runs
        ],
        "grid": GRID.tolist(),
        "x": "relative depth l / L (layer l of L; boundary l for the logit lens)",
        "differences": differences(runs, summaries),
        "quantities": {},
    }
    for q in quantities:
        entry = {"analysis": q.analysis, "label": q.label, "profiles": {}, "points": {}}
        for run in runs:
            x, y = profile(run, q)
            entry["points"][run.label] = {"x": x.tolist(), "y": y.tolist()}
            entry["profiles"][run.label] = on_grid(x, y).tolist()
        doc["quantities"][q.name] = entry
    owner = combined_identity([run.identity for run in runs], " vs ")
    stems = "-".join(str(run.model).rsplit("/", 1)[-1] for run in runs)
    suggestion = str(guard.path.parent / f"compare-{stems}")
    guard.claim(owner["fingerprint"], owner["name"], owner["source"], suggestion=suggestion)
    folder = RunFolder(guard.path)
    transitions = {}
    for label, summary in summaries.items():
        finding = summary.finding("transition")
        transitions[label] = finding.relative_depth if finding else None
    figures = []
    if plots:
        figures = [p for q in quantities for p in draw(q, runs, folder.figures, transitions)]
    atomic_write_json(folder.compare_json, doc)
    pngs = [p for p in figures if p.suffix == ".png"]
    html_page = page(runs, summaries, pngs, doc["differences"])
    atomic_write_bytes(folder.compare_html, html_page.encode("utf-8"))
    return doc


def _depth_table(runs: list[RunData], summaries: dict[str, Summary]) -> str:
    """Headline relative depths side by side, one row per finding."""
    keys = list(dict.fromkeys(f.key for s in summaries.values() for f in s.findings))
    head = "".join(f"<th>{html.escape(run.label)} (L={run.n_layers})</th>" for run in runs)
    rows = []
    for key in keys:
        title = next(f.title for s in summaries.values() for f in s.findings if f.key == key)
        cells = []
        for run in runs:
            finding = summaries[run.label].finding(key)
            cells.append(html.escape(finding.headline) if finding else "not measured")
        rows.append(
            f"<tr><th>{html.escape(title)}</th>{''.join(f'<td>{c}</td>' for c in cells)}</tr>"
        )
    return f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def page(
    runs: list[RunData], summaries: dict[str, Summary], pngs: list[Path], rows: list[dict]
) -> str:
    """One self-contained page: the verdicts side by side, then every figure inlined."""
    cards = "".join(
        f"<div class='col'>{summary_card_html(summaries[run.label], figure_dir=None)}</div>"
        for run in runs
    )
    figures = "".join(
        f"<figure><img src='data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}' "
        f"alt='{html.escape(p.stem)}'><figcaption>{html.escape(p.stem)}</figcaption></figure>"
        for p in pngs
    )
    names = " vs ".join(html.escape(run.label) for run in runs)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em}"
        ".cols{display:flex;gap:1em;flex-wrap:wrap}.col{flex:1;min-width:320px}"
        "figure{display:inline-block;max-width:48%;margin:.5em}figure img{max-width:100%}"
        "td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #eee}" + CARD_STYLE
    )
    differing = "".join(f"<li>{html.escape(row_line(r))}</li>" for r in rows)
    return (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>depthscope compare: "
        f"{names}</title><style>{style}</style></head><body><h1>{names}</h1>"
        f"<p>Layer l of an L-layer model is drawn at relative depth l / L.</p>"
        f"<h2>Headline numbers</h2>{_depth_table(runs, summaries)}"
        "<h2>Effective depths and change points compared (relative depth, 90 % intervals; "
        "Holm-corrected; the same only within ±0.05)</h2>"
        f"<ul>{differing}</ul>"
        f"<div class='cols'>{cards}</div><h2>Profiles by relative depth</h2>{figures}</body></html>"
    )
