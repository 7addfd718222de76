"""The run folder: one module spells its paths, one type is its ``run.json``.

The rule the scan below enforces: a path inside a run folder is spelled only in
``depthscope/core/run_folder.py``; every other module asks ``RunFolder`` (``RunFolder(out).results``,
``.result(name)``, ``.summary``, ``.report``, ``.state``, ...) or imports its names. In any other
module of the package (docstrings aside: they describe, they do not build paths) the scan flags

- a file name of the run folder (``"run.json"``, ``"summary.json"``, ``"report.html"``,
  ``"prune.json"``, ...) as a string of its own, or after a ``/`` in an f-string
  (``f"{out}/run.json"``);
- a folder name of the run folder (``"results"``, ``"state"``, ``"figures"``, ...) where a path is
  built from it: an operand of ``/`` (``out / "results"``), an argument of ``Path``, ``joinpath``,
  ``os.path.join``, ``glob`` or ``rglob`` (``glob("results/*.json")``), after a ``/`` in an
  f-string (``f"{out}/results/{name}.json"``), or a string that starts with it and a ``/``, or
  holds it right after a quote or ``=`` (``"figures/"``, ``href='figures/x.pdf'``).

The same words elsewhere are not run-folder paths and are left alone: keys of other JSON documents
(a checkpoint's ``"state"``, lm-eval's ``"results"``) and prose of messages and help texts
(``"... has no results/*.json; pass a run directory ..."``), which name a path to the reader
without building one.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder
from depthscope.core.run_folder import (
    MAP_OUTPUTS,
    RunFolder,
    RunRecord,
    combined_identity,
    pair_identity,
)
from depthscope.experiments.maps.outputs import map_record

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "depthscope"
OWNER = PACKAGE / "core" / "run_folder.py"

# Files of a run folder: their names appear nowhere but in core/run_folder.py.
FILE_NAMES = {
    "run.json",
    "summary.json",
    "report.html",
    "prune.json",
    "heal.json",
    "compare.json",
    "compare.html",
    "lens.json",
    "lens.safetensors",
    "training.json",
    "reference-random-init",
    ".depthscope-run",
    ".depthscope-lock",
}
# Folders of a run folder: flagged where a path is built from them (see the module's docstring).
FOLDER_NAMES = {"results", "state", "figures", "export", "offload", "checkpoint"}
PATH_CALLS = {"Path", "PurePath", "joinpath", "join", "glob", "rglob"}
# A folder name opening a path inside a string: at its start, or after a quote or "=" (HTML).
FOLDER_IN_TEXT = re.compile(r"(?:^|['\"=])(?:" + "|".join(sorted(FOLDER_NAMES)) + r")/")


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _called(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")


def path_literals(path: Path) -> list[str]:
    """``file:line: text`` of every run-folder path spelled in ``path``."""
    tree = ast.parse(path.read_text())
    skip = _docstrings(tree)
    in_path = set()  # constants a path is built from
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            in_path.update(id(side) for side in (node.left, node.right))
        elif isinstance(node, ast.Call) and _called(node) in PATH_CALLS:
            in_path.update(id(arg) for arg in node.args)
    found = []
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # f"{run_dir}/results/{name}.json"
            for before, part in zip(node.values, node.values[1:], strict=False):
                if (
                    isinstance(before, ast.FormattedValue)
                    and isinstance(part, ast.Constant)
                    and isinstance(part.value, str)
                    and part.value.lstrip("/").split("/")[0] in FOLDER_NAMES | FILE_NAMES
                    and part.value.startswith("/")
                ):
                    found.append(f"{where}:{node.lineno}: f-string path {part.value!r}")
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip:
            continue
        text = node.value
        if text in FILE_NAMES:
            found.append(f"{where}:{node.lineno}: {text!r}")
        elif id(node) in in_path and text.split("/")[0] in FOLDER_NAMES:
            found.append(f"{where}:{node.lineno}: path part {text!r}")
        elif FOLDER_IN_TEXT.search(text):
            found.append(f"{where}:{node.lineno}: path in text {text!r}")
    return found


def test_only_the_run_folder_module_spells_run_folder_paths():
    found = [
        line
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != OWNER
        for line in path_literals(path)
    ]
    assert not found, "use depthscope.core.run_folder (RunFolder, its names):\n" + "\n".join(found)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        '"""Writes run.json."""\n'
        "a = out / 'results' / 'x.json'\n"
        "b = Path(out, 'state')\n"
        "c = sorted(out.glob('results/*.json'))\n"
        "d = f'{out}/results/{name}.json'\n"
        "e = 'summary.json'\n"
        "f = {'results': [1], 'state': 2}\n"  # keys of other documents: not paths
        "g = os.path.join(out, 'offload')\n"
        "h = 'figures/'\n"
        "i = f\"<a href='figures/{name}.pdf'>pdf</a>\"\n"
        "j = f'{out} has no results/*.json; pass a run directory'\n"  # prose: not a path
        "k = 'draws results/*.json again ' 'without the model'\n"  # help text: not a path
    )
    found = path_literals(module)
    flagged = sorted(int(line.split(":")[1]) for line in found)
    assert flagged == [2, 3, 4, 5, 6, 8, 9, 10], found  # a to e, g to i; not f, j, k


def test_the_folder_names_every_path(tmp_path):
    folder = RunFolder(tmp_path)
    assert folder.run_json == tmp_path / "run.json"
    assert folder.result("logit-lens") == tmp_path / "results" / "logit-lens.json"
    assert folder.summary == tmp_path / "summary.json"
    assert folder.report == tmp_path / "report.html"
    assert folder.figures == tmp_path / "figures"
    assert folder.state == tmp_path / "state"
    assert folder.reference.path == tmp_path / "reference-random-init"
    assert folder.reference.run_json == tmp_path / "reference-random-init" / "run.json"
    assert (folder.prune, folder.heal) == (tmp_path / "prune.json", tmp_path / "heal.json")
    assert folder.compare_html == tmp_path / "compare.html"
    assert folder.lens_tensors == tmp_path / "lens.safetensors"
    assert folder.checkpoint_record == tmp_path / "checkpoint" / "state.json"
    assert folder.training == tmp_path / "training.json"
    assert folder.export == tmp_path / "export"
    assert folder.result_files() == []


ANALYZE_KEYS = [
    "depthscope_run",
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
]
MAP_KEYS = [
    "depthscope_run",
    "status",
    "started",
    "finished",
    "command",
    "model",
    "data",
    "n_prompts",
    "n_tokens",
    "seed",
    "analyses",
    "status_by_analysis",
    "timings",
    "versions",
    "device",
    "threads",
    "processes",
]


def _record(**extra) -> RunRecord:
    return RunRecord(
        status="running",
        started="2025-01-01T00:00:00+00:00",
        finished=None,
        command="depthscope analyze m",
        model={"name": "m", "source": "folder:/m", "fingerprint": "f"},
        data={"source": "builtin:text", "n_requested": 2},
        n_prompts=2,
        n_tokens=20,
        seed=0,
        analyses=["contributions"],
        status_by_analysis={"contributions": "computed"},
        timings={"contributions": 0.1},
        versions={"depthscope": "0"},
        device="cpu",
        threads=1,
        **extra,
    )


def test_run_json_keeps_each_commands_keys_in_order(tmp_path):
    analyze = _record(
        batch_size=64, settings={}, data_by_analysis={}, skipped={}, world_size=1, history=[]
    )
    folder = RunFolder(tmp_path)
    folder.write_record(analyze)
    doc = json.loads(folder.run_json.read_text())
    assert list(doc) == ANALYZE_KEYS
    assert doc["depthscope_run"] == 1 and doc["finished"] is None  # None written where required
    assert folder.read_record() == analyze
    pair = SimpleNamespace(identity={"name": "m", "source": "folder:/m", "fingerprint": "f"})
    data = {"n_train_texts": 2, "n_val_texts": 1, "n_train_tokens": 9, "n_val_tokens": 3}
    written = map_record(  # what `map` writes, not a record built here
        pair,
        pair,
        {**data, "seconds": {"solve": 0.5}},
        data_spec="builtin:text",
        seed=0,
        device="cpu",
        started="2025-01-01T00:00:00+00:00",
        seconds=1.0,
        processes=2,
    )
    assert list(written.to_json()) == MAP_KEYS


def test_a_record_reads_leniently_and_refuses_what_is_not_one(tmp_path):
    assert RunRecord.from_json({"experiment": 1}) is None
    assert RunRecord.from_json({"depthscope_run": 1}).analyses is None
    (tmp_path / "run.json").write_text("[1, 2]")
    assert RunFolder(tmp_path).read_record() is None
    assert RunRecord.blank().to_json()["depthscope_run"] == 1


def test_a_map_folder_belongs_to_its_pair(tmp_path):
    """A map folder written before markers existed is owned by its pair, not by a 968-character
    dict as a model name."""
    source = {"name": "a", "source": "folder:/a", "fingerprint": "fa"}
    target = {"name": "b", "source": "folder:/b", "fingerprint": "fb"}
    record = _record(processes=1)
    record.model = {"source": source, "target": target}
    RunFolder(tmp_path).write_record(record)
    owner = OutputFolder(tmp_path, outputs=MAP_OUTPUTS).owner()
    assert owner == pair_identity(source, target)
    assert owner["name"] == "a→b" and owner["source"] == "folder:/a→folder:/b"
    assert pair_identity(source, target) != pair_identity(target, source)
    assert combined_identity([source, target], " vs ")["name"] == "a vs b"


def test_refusals_name_the_option_the_user_gave(tmp_path):
    """A folder given as ``--save`` is refused as ``--save``, busy or owned by another model."""
    folder = tmp_path / "pruned"
    save = OutputFolder(folder, outputs=None, option="--save")
    other = OutputFolder(folder, outputs=None, option="--save")
    with save.lock(), pytest.raises(DepthscopeError) as busy, other.lock():
        pass
    assert "choose another --save" in str(busy.value) and "--out" not in str(busy.value)
    save.claim("a" * 16, "model-a", "source-a")
    with pytest.raises(DepthscopeError) as owned:
        OutputFolder(folder, outputs=None, option="--save").claim("b" * 16, "model-b", "source-b")
    assert str(owned.value).startswith(f"--save {folder} holds results of model 'model-a'")
    assert "choose another --save" in str(owned.value) and "--out" not in str(owned.value)
