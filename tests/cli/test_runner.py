"""A run that is interrupted resumes from its checkpoints and gives exactly the same results."""

from __future__ import annotations

from pathlib import Path

import pytest
from recording_progress import RecordingProgress

from depthscope.core.errors import DepthscopeError
from depthscope.core.progress import Progress
from depthscope.core.result import Result
from depthscope.data.sources import load_examples
from depthscope.models.loading.loader import load_model
from depthscope.run import runner
from depthscope.run.checkpoints import StateCheckpoints, read_checkpoint

ANALYSES = ["contributions", "future-effects", "logit-lens"]


def interrupt_after(monkeypatch, prompts: int, error: BaseException | None = None) -> None:
    """Ctrl-C (or ``error``) right after the ``prompts``-th prompt of any analysis was folded in."""
    real_update = StateCheckpoints.update
    calls = []

    def update_then_interrupt(self, name, state, meta):
        real_update(self, name, state, meta)
        calls.append(name)
        if len(calls) == prompts:
            raise error or KeyboardInterrupt()

    monkeypatch.setattr(StateCheckpoints, "update", update_then_interrupt)


def _request(out: Path) -> runner.RunRequest:
    return runner.RunRequest(
        analyses=list(ANALYSES),
        data="builtin:arith-words",
        n=5,
        out=out,
        prompt_batch=2,
        batch_size=16,
    )


def test_interrupted_run_resumes_to_identical_results(tiny_model_dir, tmp_path, monkeypatch):
    lm = load_model(str(tiny_model_dir), progress=False)
    examples = load_examples("builtin:arith-words", 5)
    reference = runner.run_analyses(lm, examples, _request(tmp_path / "a"), Progress())
    assert all(reference.status[name] == "computed" for name in ANALYSES)

    interrupt_after(monkeypatch, 4)
    with pytest.raises(runner.RunInterrupted, match="rerun the same command to resume"):
        runner.run_analyses(lm, examples, _request(tmp_path / "b"), Progress())
    monkeypatch.undo()
    assert list((tmp_path / "b" / "state").glob("*.safetensors"))
    resumed = runner.run_analyses(lm, examples, _request(tmp_path / "b"), Progress())
    assert any(status.startswith("resumed") for status in resumed.status.values())
    for name in ANALYSES:
        a = Result.load(tmp_path / "a" / "results" / f"{name}.json")
        b = Result.load(tmp_path / "b" / "results" / f"{name}.json")
        assert a.data == b.data and a.n_prompts == b.n_prompts == 5


def test_a_run_stopped_by_an_error_keeps_the_prompts_it_finished(
    tiny_model_dir, tmp_path, monkeypatch
):
    """E.g. out of memory even at batch size 1 on a later, longer prompt: earlier work is saved."""
    lm = load_model(str(tiny_model_dir), progress=False)
    examples = load_examples("builtin:arith-words", 5)
    reference = runner.run_analyses(lm, examples, _request(tmp_path / "a"), Progress())
    stop = DepthscopeError("out of memory even with --batch-size 1; use ...")
    interrupt_after(monkeypatch, 4, stop)
    with pytest.raises(DepthscopeError, match="out of memory even"):
        runner.run_analyses(lm, examples, _request(tmp_path / "b"), Progress())
    monkeypatch.undo()
    interrupt_after(monkeypatch, 4)  # Ctrl-C at the same point flushes every pending checkpoint
    with pytest.raises(runner.RunInterrupted):
        runner.run_analyses(lm, examples, _request(tmp_path / "c"), Progress())
    monkeypatch.undo()

    def done(run: str) -> dict[str, list[int]]:
        files = sorted((tmp_path / run / "state").glob("*.json"))
        return {f.stem: read_checkpoint(f.parent, f.stem)[1]["meta"]["done"] for f in files}

    assert done("b") == done("c") and sum(map(len, done("b").values())) >= 4
    resumed = runner.run_analyses(lm, examples, _request(tmp_path / "b"), Progress())
    assert any(status.startswith("resumed") for status in resumed.status.values())
    for name in ANALYSES:
        assert reference.status[name] == "computed"
        a = Result.load(tmp_path / "a" / "results" / f"{name}.json")
        b = Result.load(tmp_path / "b" / "results" / f"{name}.json")
        assert a.data == b.data


def test_changed_inputs_are_not_mixed(tiny_model_dir, tmp_path):
    lm = load_model(str(tiny_model_dir), progress=False)
    request = _request(tmp_path / "run")
    request.analyses = ["contributions"]
    runner.run_analyses(lm, load_examples("builtin:arith-words", 5), request, Progress())
    again = runner.run_analyses(lm, load_examples("builtin:arith-words", 5), request, Progress())
    assert again.status["contributions"] == "up to date"
    request.seed = 1  # different prompts: recomputed, not reused
    changed = runner.run_analyses(
        lm, load_examples("builtin:arith-words", 5, seed=1), request, Progress()
    )
    assert changed.status["contributions"] == "computed"


def test_resumed_igrad_still_warns_about_restored_prompts(tiny_model_dir, tmp_path, monkeypatch):
    lm = load_model(str(tiny_model_dir), progress=False)
    examples = load_examples("builtin:paper", 2)
    request = runner.RunRequest(
        analyses=["igrad"],
        data="builtin:paper",
        n=2,
        out=tmp_path / "run",
        prompt_batch=1,
        overrides={"igrad.steps": "1", "igrad.targets": "layer"},
    )
    interrupt_after(monkeypatch, 1)
    with pytest.raises(runner.RunInterrupted):
        runner.run_analyses(lm, examples, request, Progress())
    monkeypatch.undo()
    progress = RecordingProgress()
    resumed = runner.run_analyses(lm, examples, request, progress)
    assert resumed.status["igrad"].startswith("resumed")
    warned = [note for note in progress.notes if note.startswith("igrad: prompt ")]
    assert [note.split(",")[0] for note in warned] == ["igrad: prompt 0", "igrad: prompt 1"]
