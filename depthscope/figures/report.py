"""One self-contained ``report.html`` per run directory: what ran, key numbers, every figure.

The page embeds the PNGs as base64, so it can be mailed or archived alone. It reads only saved
files (``run.json``, ``results/*.json``, ``figures/``); figures missing or older than their
result are drawn first. ``run.json`` is optional and every key in it may be missing.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from pathlib import Path

from depthscope.analyses.catalog import paper_order
from depthscope.core.atomic_files import atomic_write_bytes
from depthscope.core.errors import DepthscopeError
from depthscope.core.registry import card
from depthscope.core.result import Result
from depthscope.core.run_folder import RunFolder, figures_link
from depthscope.figures.common import save_figure
from depthscope.figures.figure_files import plot_result, read_index
from depthscope.figures.verdict_figures import CAPTION as EVIDENCE_CAPTION
from depthscope.figures.verdict_figures import SENSITIVITY_CAPTION, draw_evidence, draw_sensitivity
from depthscope.verdict.card import CARD_STYLE, summary_card_html
from depthscope.verdict.summary import Summary, write_summary

STYLE = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:2px 10px;text-align:left;
vertical-align:top;border-bottom:1px solid #eee}th{font-weight:600}
code{font-size:.9em;background:#f4f4f4;padding:0 3px}
figure{display:inline-block;margin:.6em .6em .6em 0;vertical-align:top}
figure.half{max-width:48%}figure.wide{max-width:100%}
figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.8em;color:#444}
.stem{color:#888;font-size:.9em}.paper{color:#666;font-size:.9em;margin-top:-.6em}
.numbers li{margin:.2em 0}.note{color:#a33}
"""


def warn(message: str) -> None:
    print(f"depthscope: warning: {message}", file=sys.stderr)


def result_files(run_dir: Path) -> list[Path]:
    """The saved results of a run directory; a clear error if there are none."""
    results = RunFolder(run_dir).result_files()
    if not results:
        raise DepthscopeError(
            f"{run_dir} has no results/*.json; run `depthscope analyze --out {run_dir}` first"
        )
    return results


def plot_run(run_dir: Path) -> list[Path]:
    """Redraw the figures of every saved result of ``run_dir`` into ``run_dir/figures``.

    Unknown analyses and results that cannot be drawn are skipped with a warning line, so one
    bad file never blocks the other figures.
    """
    written: list[Path] = []
    for path in result_files(run_dir):
        result = Result.load(path)
        if result.card() is None:
            warn(f"no figures for analysis {result.analysis!r} ({path.name}); skipped")
            continue
        try:
            written += plot_result(result, RunFolder(run_dir).figures)
        except DepthscopeError as exc:
            warn(f"{path.name}: {exc}; skipped")
    return written


def key_numbers(result: Result) -> list[str]:
    """A few numbers that summarise a result in words (the figures carry the rest)."""
    return result.numbers()


# ---------------------------------------------------------------- page parts


def esc(value: object) -> str:
    return html.escape(str(value))


def load_run(run_dir: Path) -> dict:
    """``run.json`` if present and valid, else {} (the report then relies on the results)."""
    return RunFolder(run_dir).read_run_json() or {}


def _ordered(results: list[tuple[Path, Result]]) -> list[tuple[Path, Result]]:
    order = paper_order()
    rank = {name: i for i, name in enumerate(order)}
    return sorted(results, key=lambda pr: (rank.get(pr[1].analysis, len(order)), pr[0].name))


def table(rows: list[tuple[str, object]]) -> str:
    cells = [f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows if v not in (None, "")]
    return "<table>" + "".join(cells) + "</table>"


def proof_line(record: object) -> str | None:
    """The load-time proof of ``run.json``'s model (engine/proof.py) in a few words."""
    if not isinstance(record, dict):
        return None
    if record.get("status") != "passed":
        return str(record.get("status", "?"))

    def number(part: str, key: str = "max_rel") -> str:
        value = (record.get(part) or {}).get(key) if part else record.get(key)
        return f"{value:.2g}" if isinstance(value, int | float) else "?"

    return (
        f"passed: residual identity {number('residual_identity')}, replayed logits "
        f"{number('replay_logits')} (relative error; tolerance {number('', 'tolerance')} in "
        f"{record.get('dtype', '?')})"
    )


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
        ("load-time proof", proof_line(model.get("load_check"))),
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
    figures = RunFolder(run_dir).figures
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


def figure_tag(png: Path, caption: str = "") -> str:
    """The PNG inlined as base64 with its how-to-read line; wide maps get a full row."""
    raw = png.read_bytes()
    width, height = png_size(raw)
    wide = width > 1000 or width > 1.8 * max(height, 1)
    data = base64.b64encode(raw).decode("ascii")
    pdf = png.with_suffix(".pdf")
    link = f" · <a href='{esc(figures_link(pdf.name))}'>pdf</a>" if pdf.exists() else ""
    return (
        f"<figure class='{'wide' if wide else 'half'}'>"
        f"<img src='data:image/png;base64,{data}' alt='{esc(png.stem)}'>"
        f"<figcaption>{esc(caption) + '<br>' if caption else ''}"
        f"<span class='stem'>{esc(png.stem)}{link}</span></figcaption></figure>"
    )


def settings_line(result: Result) -> str:
    items = ", ".join(f"{k}={json.dumps(v)}" for k, v in result.settings.items())
    return f"<p>settings: <code>{esc(items or 'defaults')}</code></p>"


def analysis_section(run_dir: Path, path: Path, result: Result) -> str:
    name = result.analysis
    info = card(name)
    heading = info.heading() if info else name
    parts = [f"<h2 id='{esc(name)}'>{esc(heading)}</h2>"]
    if info is not None and info.paper is not None:
        parts.append(f"<p class='paper'>paper: {esc(info.paper)}</p>")
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
    if info is None:
        parts.append("<p class='note'>no figures are defined for this analysis</p>")
        return "\n".join(parts)
    try:
        prefix = f"{name}_"
        parts += [
            figure_tag(png, info.caption(png.stem.removeprefix(prefix)))
            for png in ensure_figures(run_dir, path, result)
        ]
    except DepthscopeError as exc:  # plot_run already warned on the terminal
        parts.append(f"<p class='note'>figures could not be drawn: {esc(exc)}</p>")
    return "\n".join(parts)


EVIDENCE = "verdict_evidence"


def evidence_figure(run_dir: Path, summary: Summary) -> Path | None:
    """Draw the transition's evidence figure into ``figures/``; its PNG (None without one)."""
    finding = summary.finding("transition")
    figures = RunFolder(run_dir).figures
    if finding is None or not finding.details.get("profiles") or not summary.n_layers:
        for suffix in ("png", "pdf"):
            (figures / f"{EVIDENCE}.{suffix}").unlink(missing_ok=True)
        return None
    log_scale = summary.rules.get("step_vs_trend", {}).get("log_scale", [])
    fig = draw_evidence(finding.details, summary.n_layers, summary.model, log_scale)
    return save_figure(fig, figures / EVIDENCE)[0]


SENSITIVITY = "verdict_sensitivity"


def sensitivity_figure(run_dir: Path, summary: Summary) -> Path | None:
    """Draw every thresholded number's sweep into ``figures/``; its PNG (None without any)."""
    sweeps = [
        (finding.title, sweep)
        for finding in summary.findings
        for sweep in finding.details.get("sensitivity") or []
    ]
    figures = RunFolder(run_dir).figures
    fig = draw_sensitivity(sweeps, summary.model)
    if fig is None:
        for suffix in ("png", "pdf"):
            (figures / f"{SENSITIVITY}.{suffix}").unlink(missing_ok=True)
        return None
    return save_figure(fig, figures / SENSITIVITY)[0]


def write_report(run_dir: Path) -> Path:
    """Write ``run_dir/report.html`` from ``run.json``, the saved results and their figures."""
    run_dir = Path(run_dir)
    results = _ordered([(p, Result.load(p)) for p in result_files(run_dir)])
    run = load_run(run_dir)
    model = run.get("model") if isinstance(run.get("model"), dict) else results[0][1].model
    title = f"depthscope: {model.get('name', 'model')}"
    summary = write_summary(run_dir)  # the verdict first: what the reader came for
    evidence = evidence_figure(run_dir, summary)
    swept = sensitivity_figure(run_dir, summary)
    body = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{STYLE}{CARD_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        summary_card_html(summary),
        figure_tag(evidence, EVIDENCE_CAPTION) if evidence else "",
        figure_tag(swept, SENSITIVITY_CAPTION) if swept else "",
        table(identity_rows(run, model)),
        "<h2>Analyses</h2>",
        timing_table(run, results),
    ]
    if not run:
        body.append("<p class='note'>no readable run.json; identity taken from the results</p>")
    body += [analysis_section(run_dir, path, result) for path, result in results]
    body.append("</body></html>")
    path = RunFolder(run_dir).report
    atomic_write_bytes(path, "\n".join(body).encode("utf-8"))
    return path
