"""The run folder: every path a command writes under ``--out``, and ``run.json`` as a type.

This module is the one place that spells a path inside a run folder; every other module asks
:class:`RunFolder` (``RunFolder(out).results``, ``.result("logit-lens")``, ``.report``, ...) and
writes ``run.json`` only through :meth:`RunFolder.write_record` with a :class:`RunRecord`.

========================================  ========================================================
path                                      written by (format)
========================================  ========================================================
``run.json``                              ``analyze`` (``run/runner.py``), ``map``
                                          (``experiments/maps/outputs.py``): :class:`RunRecord`
``results/<analysis>.json``               ``analyze``, ``map``, ``Result.save``: a ``Result``
``state/``                                ``analyze`` (``run/checkpoints.py``): checkpoints
``summary.json``                          the verdict (``verdict/summary.py``)
``figures/`` (``figures/index.json``)     the drawers (``figures/figure_files.py``, ``figures/report.py``),
                                          ``prune``, ``compare``: PNG + PDF
``report.html``                           ``figures/report.py``
``reference-random-init/``                ``analyze --reference random-init``: a run folder
``offload/``                              weights a ``--device-map`` puts on disk
``export/<analysis>.csv|parquet``         ``export`` (default ``--out``)
``prune.json``, ``heal.json``             ``prune`` (``experiments/prune/``)
``compare.json``, ``compare.html``        ``compare`` (``results/compare.py``)
``lens.json``, ``lens.safetensors``       ``lens train`` (``engine/tuned_lens.py``)
``checkpoint/``                           ``lens train`` and training runs (``state.json`` + parts)
``training.json``                         ``scratch``, ``finetune`` (``experiments/training/``)
``.depthscope-run``, ``.depthscope-lock`` the folder's owner and the lock (``core/folders.py``)
========================================  ========================================================

Why a module of its own beside :mod:`depthscope.core.folders`: ``folders.py`` *guards* a folder
(check that it can be written and holds nothing foreign, claim it for one model, lock it against a
second run) whatever the folder holds, a run folder, a lens folder or a trained model's folder;
this module says what a run folder *holds* and where, and what each command writes
(``*_OUTPUTS``, what the guard checks). The guard reads the layout from here, never the reverse,
so the two stay one-way and the layout reads on one page.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from pathlib import Path

from depthscope.core.atomic_files import atomic_write_json, read_json_object

# ---------------------------------------------------------------------- names

RUN_JSON = "run.json"
RESULTS = "results"
STATE = "state"
SUMMARY = "summary.json"
FIGURES = "figures"
FIGURE_INDEX = "index.json"  # inside figures/: the drawing order of each analysis's figures
REPORT = "report.html"
REFERENCE = "reference-random-init"  # the random-weight reference run, itself a run folder
OFFLOAD = "offload"
EXPORT = "export"
PRUNE = "prune.json"
HEAL = "heal.json"
COMPARE_JSON = "compare.json"
COMPARE_HTML = "compare.html"
LENS_RECORD = "lens.json"
LENS_TENSORS = "lens.safetensors"
CHECKPOINT = "checkpoint"  # a training run's or a lens's checkpoint folder
CHECKPOINT_RECORD = "state.json"  # inside checkpoint/: the record naming the parts
TRAINING = "training.json"
MARKER = ".depthscope-run"  # JSON: which model the folder belongs to
LOCK = ".depthscope-lock"  # JSON: pid, host, start time and command of the run holding it

RUN_SCHEMA = 1  # run.json's schema version, stored under its historical key "depthscope_run"
TRAINING_FORMAT = "depthscope-training/1"  # training.json of a training folder (its record)

# What each command writes into its --out: what must not be there unless depthscope wrote it.
ANALYZE_OUTPUTS = (RUN_JSON, RESULTS, STATE, FIGURES, REPORT, SUMMARY)
MAP_OUTPUTS = (RUN_JSON, RESULTS, FIGURES)
PRUNE_OUTPUTS = (PRUNE, HEAL, FIGURES)
COMPARE_OUTPUTS = (COMPARE_JSON, COMPARE_HTML, FIGURES)
LENS_OUTPUTS = (LENS_RECORD, LENS_TENSORS, CHECKPOINT)


def export_outputs(analyses: list[str], fmt: str) -> tuple[str, ...]:
    """The tables ``export`` writes: ``<analysis>.<fmt>``, one per saved result."""
    return tuple(f"{analysis}.{fmt}" for analysis in analyses)


def figures_link(name: str = "") -> str:
    """A figure (or, with no name, the ``figures/`` folder) as a link from a page at the top of
    the run folder (``report.html``, the verdict's card)."""
    return f"{FIGURES}/{name}"


# ---------------------------------------------------------------------- run.json

_KEYS = {"schema_version": "depthscope_run"}  # field -> key in run.json


@dataclass
class RunRecord:
    """``run.json``: what ran in a run folder, on what, how long.

    ``analyze`` records every analysis the folder holds (settings, data, status and timings per
    analysis, the last commands); ``map`` records its model pair. Fields left ``None`` among
    ``batch_size``, ``settings``, ``data_by_analysis``, ``skipped``, ``world_size``, ``history``
    and ``processes`` are not written, so each command's file keeps exactly its keys.
    ``schema_version`` is stored as ``"depthscope_run"``, the key that has always marked a
    ``run.json`` as depthscope's.
    """

    status: str | None
    started: str | None
    finished: str | None
    command: str | None
    model: dict | None
    data: dict | None
    n_prompts: int | None
    n_tokens: int | None
    seed: int | None
    analyses: list[str] | None
    status_by_analysis: dict | None
    timings: dict | None
    versions: dict | None
    device: str | None
    threads: int | None
    batch_size: int | None = None
    settings: dict | None = None
    data_by_analysis: dict | None = None
    skipped: dict | None = None
    world_size: int | None = None
    history: list | None = None
    processes: int | None = None
    schema_version: int = RUN_SCHEMA

    ORDER = (  # the keys' order in the file
        "schema_version",
        "status",
        "started",
        "finished",
        "command",
        "model",
        "data",
        "n_prompts",
        "n_tokens",
        "seed",
        "batch_size",
        "analyses",
        "settings",
        "data_by_analysis",
        "status_by_analysis",
        "timings",
        "skipped",
        "versions",
        "device",
        "threads",
        "world_size",
        "history",
        "processes",
    )

    def to_json(self) -> dict:
        return {
            _KEYS.get(name, name): getattr(self, name)
            for name in self.ORDER
            if not (name in _OPTIONAL and getattr(self, name) is None)
        }

    @classmethod
    def from_json(cls, doc: dict) -> RunRecord | None:
        """The record of a ``run.json`` depthscope wrote (missing keys read as ``None``); None for a
        file that is not one."""
        if not isinstance(doc, dict) or _KEYS["schema_version"] not in doc:
            return None
        values = {f.name: doc.get(_KEYS.get(f.name, f.name)) for f in fields(cls)}
        return cls(**values)

    @classmethod
    def blank(cls) -> RunRecord:
        """A record with nothing recorded yet (a folder without ``run.json``)."""
        return cls(**{f.name: None for f in fields(cls) if f.name != "schema_version"})

    def owner(self) -> dict:
        """``{"name", "source", "fingerprint"}`` of the model (or model pair) the run is of."""
        model = self.model if isinstance(self.model, dict) else {}
        if isinstance(model.get("source"), dict) and isinstance(model.get("target"), dict):
            return pair_identity(model["source"], model["target"])
        return {
            "name": model.get("name"),
            "source": model.get("source"),
            "fingerprint": model.get("fingerprint"),
        }


# The fields that default to None (batch_size, settings, ... processes): written only when set.
_OPTIONAL = frozenset(f.name for f in fields(RunRecord) if f.default is None)


def combined_identity(members: list[dict], joiner: str) -> dict:
    """One ``{"name", "source", "fingerprint"}`` for a folder of several models (a map's pair, the
    runs a comparison reads): names and sources joined, fingerprints hashed together."""
    fingerprints = "|".join(str(m.get("fingerprint")) for m in members)
    return {
        "name": joiner.join(str(m.get("name")) for m in members),
        "source": joiner.join(str(m.get("source")) for m in members),
        "fingerprint": hashlib.sha256(fingerprints.encode()).hexdigest()[:16],
    }


def pair_identity(source: dict, target: dict) -> dict:
    """The identity a ``map`` folder is claimed for: its source and target model."""
    return combined_identity([source, target], "→")


# ---------------------------------------------------------------------- the folder


class RunFolder:
    """The paths of one run folder (nothing is created or checked here: see ``core/folders.py``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ---------------------------------------------------------------- analyze
    @property
    def run_json(self) -> Path:
        return self.path / RUN_JSON

    @property
    def results(self) -> Path:
        return self.path / RESULTS

    def result(self, analysis: str) -> Path:
        """``results/<analysis>.json``."""
        return self.results / f"{analysis}.json"

    def result_files(self) -> list[Path]:
        """The saved results, sorted by file name (none if there is no ``results/``)."""
        return sorted(self.results.glob("*.json"))

    @property
    def state(self) -> Path:
        return self.path / STATE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    @property
    def report(self) -> Path:
        return self.path / REPORT

    @property
    def reference(self) -> RunFolder:
        """The random-weight reference run (``analyze --reference random-init``)."""
        return RunFolder(self.path / REFERENCE)

    @property
    def offload(self) -> Path:
        return self.path / OFFLOAD

    # ---------------------------------------------------------------- other commands
    @property
    def export(self) -> Path:
        return self.path / EXPORT

    @property
    def prune(self) -> Path:
        return self.path / PRUNE

    @property
    def heal(self) -> Path:
        return self.path / HEAL

    @property
    def compare_json(self) -> Path:
        return self.path / COMPARE_JSON

    @property
    def compare_html(self) -> Path:
        return self.path / COMPARE_HTML

    @property
    def lens_record(self) -> Path:
        return self.path / LENS_RECORD

    @property
    def lens_tensors(self) -> Path:
        return self.path / LENS_TENSORS

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def checkpoint_record(self) -> Path:
        return self.checkpoint / CHECKPOINT_RECORD

    @property
    def training(self) -> Path:
        return self.path / TRAINING

    @property
    def marker(self) -> Path:
        return self.path / MARKER

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    # ---------------------------------------------------------------- run.json
    def read_run_json(self) -> dict | None:
        """``run.json`` as written, None if missing, damaged or not a JSON object."""
        return read_json_object(self.run_json)

    def read_record(self) -> RunRecord | None:
        """``run.json`` as a :class:`RunRecord`; None if absent or not depthscope's."""
        doc = self.read_run_json()
        return None if doc is None else RunRecord.from_json(doc)

    def write_record(self, record: RunRecord) -> Path:
        """Write ``run.json`` (atomically): the one writer of the file."""
        atomic_write_json(self.run_json, record.to_json())
        return self.run_json
