"""The effective-depth verdict of a run: a few numbers, each as a layer and a relative depth.

Computed from the saved ``results/*.json`` only (so ``depthscope plot`` can recompute it), by the
rules of :mod:`depthscope.verdict.rules` (documented in docs/summary.md). What the verdict holds
is declared by the analysis cards, never named here:

- **transition**: where the second regime starts — the change point of the first transition
  indicator a run holds (cards' :class:`~depthscope.analyses.card.Profile` s with an indicator:
  the future effect on later layers first), with the other indicators' change points alongside;
- one line per key of the cards' :class:`~depthscope.analyses.card.VerdictRule` s (layers used
  by future tokens, lens convergence, operands, difficulty), filled by the lowest-ranked card
  present.

A finding whose analysis is missing is replaced by the command that would produce it; a malformed
result becomes a note. Nothing here raises for a run directory that exists.
"""

from __future__ import annotations

import dataclasses
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path

from depthscope.analyses.card import Finding, VerdictRule
from depthscope.analyses.catalog import cards, paper_order
from depthscope.core.atomic_files import atomic_write_json
from depthscope.core.errors import DepthscopeError
from depthscope.core.result import Result
from depthscope.core.run_folder import SUMMARY, RunFolder
from depthscope.verdict import (
    bootstrap,
    differences,
    distributions,
    evidence,
    reference,
    regime,
    rules,
    sensitivity,
    transition,
)

SCHEMA = 1
SUMMARY_FILE = SUMMARY
RULES_DOC = "docs/summary.md"


@dataclass
class Missing:
    """A finding that could not be computed, and the command that would make it possible."""

    key: str
    title: str
    analyses: list[str]
    command: str


@dataclass
class Summary:
    """The verdict of one run directory (``summary.json``)."""

    model: str
    n_layers: int | None
    run_dir: str
    findings: list[Finding] = field(default_factory=list)
    missing: list[Missing] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    data_sources: dict = field(default_factory=dict)  # analysis -> data source
    rules: dict = field(default_factory=dict)
    schema: int = SCHEMA

    def finding(self, key: str) -> Finding | None:
        return next((f for f in self.findings if f.key == key), None)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict) -> Summary:
        doc = dict(doc)
        doc["findings"] = [Finding(**f) for f in doc.get("findings", [])]
        doc["missing"] = [Missing(**m) for m in doc.get("missing", [])]
        return cls(**doc)


def rule_constants() -> dict:
    return {
        "step_vs_trend": {
            "step_free_fits": list(regime.FREE_MODELS),
            "step_fits": list(regime.STEP_MODELS),
            "fit": "least squares on the fit scale",
            "smooth_span": regime.SMOOTH_SPAN,
            "min_segment": regime.MIN_SEGMENT,
            "min_segment_fraction": regime.MIN_SEGMENT_FRACTION,
            "statistic": "BIC(best step-free fit) - BIC(best step fit), BIC = n log SSE + k log n",
            "parameters": dict(regime.PARAMETERS),
            "null": "linear fit + AR(1) noise read off the best step-free fit's residuals",
            "rho_quantile": regime.RHO_QUANTILE,
            "simulations": regime.SIMULATIONS,
            "alpha": regime.ALPHA,
            "correction": "Holm over the indicators of a run",
            "log_scale": list(
                dict.fromkeys(p.indicator for _, p in evidence.indicator_profiles() if p.log)
            ),
            "min_step": regime.MIN_STEP,
        },
        "consensus": evidence.RULE,
        "differences": {
            "alpha": differences.ALPHA,
            "layer_margin": differences.LAYER_MARGIN,
            "depth_margin": differences.DEPTH_MARGIN,
            "correction": "Holm over the comparisons made together",
        },
        "sensitivity": {k: list(v) for k, v in sensitivity.RANGES.items()},
        "bootstrap": {
            "over": "prompts",
            "resamples": bootstrap.RESAMPLES,
            "level": bootstrap.LEVEL,
            "seed": bootstrap.SEED,
            "aggregate": "weighted mean over prompts of the per-prompt profiles",
        },
        "future_use_fraction_of_first_half_median": rules.FUTURE_FRACTION,
        "lens_overlap": rules.LENS_OVERLAP,
        "lens_kl_fraction_of_first_half_median": rules.LENS_KL_FRACTION,
        "token_share_of_max": rules.TOKEN_SHARE,
        "doc": RULES_DOC,
    }


# ------------------------------------------------------------------------------ reading a run


def load_results(run_dir: Path) -> tuple[dict[str, Result], list[str]]:
    """``{analysis: Result}`` of ``run_dir/results``; unreadable files become notes."""
    results, notes = {}, []
    for path in RunFolder(run_dir).result_files():
        try:
            result = Result.load(path)
        except DepthscopeError as exc:
            notes.append(f"{path.name} skipped: {exc}")
            continue
        results[result.analysis] = result
    return results, notes


def model_spec(run_dir: Path, results: dict[str, Result]) -> str:
    """What to pass to `depthscope analyze` to reproduce the run's model."""
    run = RunFolder(run_dir).read_run_json() or {}
    model: dict = run.get("model") if isinstance(run.get("model"), dict) else {}
    if not model and results:
        model = next(iter(results.values())).model
    source = str(model.get("source") or "")
    for prefix in ("folder:", "gguf:", "hf:"):
        if source.startswith(prefix):
            return source.removeprefix(prefix)
    return str(model.get("name") or "MODEL")


def _n_layers(results: dict[str, Result]) -> int | None:
    """The model's depth as the results record it, else the length of a per-layer profile."""
    for result in results.values():
        value = result.model.get("n_layers")
        if isinstance(value, int) and value > 0:
            return value
    for name, profile in evidence.indicator_profiles():
        if name in results and profile.axis == "layer":
            return len(profile.read(results[name].data))
    return None


# ------------------------------------------------------------------------------ findings


@dataclass(frozen=True)
class Line:
    """One line the verdict can hold, and the analyses that fill it (preferred first)."""

    key: str
    title: str
    providers: list[tuple[str, VerdictRule | None]]  # (analysis, its rule; None: transition)

    def suggestion(self) -> str:
        """What ``--analyses`` (and options) to suggest when none of the providers ran."""
        name, rule = self.providers[0]
        return f"{name} {rule.suggest}".strip() if rule is not None else name


def verdict_lines() -> list[Line]:
    """The transition, then each card's verdict rules in the paper's order (one line per key)."""
    lines = []
    present = evidence.indicator_profiles()
    if present:
        providers = [(name, None) for name, _ in present]
        lines.append(Line("transition", transition.TRANSITION, providers))
        lines.append(Line("effective_depth", transition.DEPTH, list(providers)))
    by_key: dict[str, Line] = {}
    for card in cards():
        for rule in card.verdict:
            line = by_key.get(rule.key)
            if line is None:
                line = by_key[rule.key] = Line(rule.key, rule.title, [])
                lines.append(line)
            line.providers.append((card.name, rule))
    for line in by_key.values():
        line.providers.sort(key=lambda item: item[1].rank)
    return lines


def _compute(
    line: Line,
    results: dict[str, Result],
    n_layers: int | None,
    found: list | None,
    sweeps: bool = True,
) -> Finding | None:
    if line.key == "transition":
        return transition.transition(found, n_layers, sweeps=sweeps) if found and n_layers else None
    if line.key == "effective_depth":
        return transition.effective_depth(found, n_layers) if found and n_layers else None
    for name, rule in line.providers:
        if name in results:
            return rule.compute(results[name], n_layers)
    return None


def summarize(run_dir: Path) -> Summary:
    """The verdict of ``run_dir`` from its saved results (missing analyses become commands)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DepthscopeError(
            f"run directory {run_dir} does not exist; pass the --out of `depthscope analyze`"
        )
    results, notes = load_results(run_dir)
    summary = summarize_results(results, run_dir, notes)
    random_dir = RunFolder(run_dir).reference
    if random_dir.results.is_dir():  # `analyze --reference random-init` ran
        random_results, random_notes = load_results(random_dir.path)
        random = summarize_results(random_results, random_dir.path, random_notes, per_source=False)
        beyond = reference.finding(summary, random)
        if beyond is not None:
            summary.findings.append(beyond)
    return summary


def first_prompts(results: dict[str, Result], n: int) -> dict[str, Result]:
    """The results as if only their first ``n`` prompts had run, for what the verdict reads from
    per-prompt data (a prompt-count study without re-running the model)."""
    cut = {}
    for name, result in results.items():
        data = dict(result.data)
        if isinstance(data.get("per_prompt"), list):
            data["per_prompt"] = data["per_prompt"][:n]
        cut[name] = dataclasses.replace(result, data=data, n_prompts=min(n, result.n_prompts))
    return cut


def summarize_results(
    results: dict[str, Result],
    run_dir: Path,
    notes: list[str] | None = None,
    *,
    per_source: bool = True,
    seed: int = bootstrap.SEED,
) -> Summary:
    """The verdict of results already read (``run_dir`` names where they live, for commands).

    Results on a mixture of prompt sources also get the verdict of each source and their
    comparison (:mod:`.distributions`; ``per_source=False`` leaves it out)."""
    run_dir = Path(run_dir)
    notes = list(notes or [])
    n_layers = _n_layers(results)
    first = next(iter(results.values()), None)
    summary = Summary(
        model=str(first.model.get("name", "model")) if first else "model",
        n_layers=n_layers,
        run_dir=str(run_dir),
        notes=notes,
        data_sources={name: r.extra.get("data_source") for name, r in results.items()},
        rules=rule_constants(),
    )
    lines = verdict_lines()
    if results and not any(name in results for line in lines for name, _ in line.providers):
        notes.append(f"no analysis of this run ({', '.join(results)}) feeds the verdict")
        return summary
    spec = model_spec(run_dir, results)

    def command(analyses: str) -> str:
        return (
            f"depthscope analyze {shlex.quote(spec)} --analyses {analyses} "
            f"--out {shlex.quote(str(run_dir))}"
        )

    try:
        found = evidence.indicators(results, seed)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        found = None
        notes.append(
            f"transition indicators: result malformed ({type(exc).__name__}: {exc}); rerun the "
            "analysis"
        )
    for line in lines:
        try:
            finding = _compute(line, results, n_layers, found, sweeps=per_source)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            notes.append(
                f"{line.title}: result malformed ({type(exc).__name__}: {exc}); rerun the analysis"
            )
            continue
        names = [name for name, _ in line.providers]
        if finding is None and line.key == "effective_depth":
            continue  # the transition line already names what to run
        if finding is None:
            summary.missing.append(Missing(line.key, line.title, names, command(line.suggestion())))
            continue
        summary.findings.append(finding)
        order = paper_order()
        absent = sorted({n for n in names if n not in results}, key=order.index)
        if line.key == "transition" and absent:  # some indicators are not in this run
            label = f"{line.title}: more indicators"
            summary.missing.append(Missing(line.key, label, absent, command(",".join(absent))))
    subsets = distributions.by_source(results) if per_source else None
    if subsets:
        verdicts = {  # other prompts: independent bootstrap draws (another seed each)
            source: summarize_results(subset, run_dir, per_source=False, seed=bootstrap.SEED + i)
            for i, (source, subset) in enumerate(subsets.items())
        }
        across = distributions.finding(verdicts, n_layers)
        if across is not None:
            summary.findings.append(across)
    return summary


def write_summary(run_dir: Path) -> Summary:
    """Compute the verdict and write ``run_dir/summary.json`` (atomically)."""
    summary = summarize(run_dir)
    atomic_write_json(RunFolder(run_dir).summary, summary.to_json())
    return summary
