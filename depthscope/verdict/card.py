"""The verdict as it is shown: lines for the terminal and a card at the top of ``report.html``."""

from __future__ import annotations

import html

from depthscope.core.run_folder import figures_link
from depthscope.verdict.summary import RULES_DOC, Summary


def summary_lines(summary: Summary) -> list[str]:
    """The verdict for the terminal: one line per finding, then the commands for missing ones."""
    depth = f"{summary.n_layers} layers" if summary.n_layers else "unknown depth"
    lines = [f"verdict for {summary.model} ({depth}; rules in {RULES_DOC}):"]
    for finding in summary.findings:
        lines.append(f"  {finding.title:<30} {finding.headline}")
        lines.append(f"    {finding.sentence}")
    for missing in summary.missing:
        lines.append(f"  {missing.title:<30} not measured; run: {missing.command}")
    lines += [f"  note: {note}" for note in summary.notes]
    return lines


CARD_STYLE = """
.verdict{border:1px solid #bbb;border-radius:6px;padding:.6em 1em;margin:1em 0;background:#fafafa}
.verdict h2{margin-top:.2em;border:none}.verdict td,.verdict th{padding:2px 10px}
.verdict .figs{color:#555;font-size:.85em}.verdict .missing{color:#a33}
"""


def _esc(value: object) -> str:
    return html.escape(str(value))


def summary_card_html(summary: Summary, figure_dir: str | None = figures_link()) -> str:
    """A short HTML card: a table of numbers, one sentence per finding, its supporting figures.

    ``figure_dir`` is the figures' location relative to the page (None: no links). The styles are
    in :data:`CARD_STYLE`.
    """
    depth = f"its {summary.n_layers} layers" if summary.n_layers else "its depth"
    rows = "".join(
        f"<tr><th>{_esc(f.title)}</th><td>{_esc(f.headline)}</td></tr>" for f in summary.findings
    )
    items = []
    for finding in summary.findings:
        figures = ", ".join(
            f"<a href='{_esc(figure_dir)}{_esc(stem)}.png'>{_esc(stem)}</a>"
            if figure_dir is not None
            else _esc(stem)
            for stem in finding.figures
        )
        support = f" <span class='figs'>(figures: {figures})</span>" if figures else ""
        items.append(f"<li><b>{_esc(finding.title)}.</b> {_esc(finding.sentence)}{support}</li>")
    items += [
        f"<li class='missing'><b>{_esc(m.title)}:</b> not measured; run "
        f"<code>{_esc(m.command)}</code></li>"
        for m in summary.missing
    ]
    items += [f"<li class='missing'>{_esc(note)}</li>" for note in summary.notes]
    return (
        f"<section class='verdict' id='verdict'><h2>Verdict: how {_esc(summary.model)} uses "
        f"{_esc(depth)}</h2><table>{rows}</table><ul>{''.join(items)}</ul>"
        f"<p class='figs'>Relative depth = layer / L. Rules and thresholds: {RULES_DOC}.</p>"
        "</section>"
    )
