"""The training loop: loss masking, determinism, convergence, exact resume, refusing foreign folders."""

from __future__ import annotations

import json
import random

import pytest
import torch
from recording_progress import RecordingProgress
from safetensors.torch import load_file

from depthscope.core.errors import DepthscopeError
from depthscope.experiments.training import run_dir
from depthscope.experiments.training.e11 import training_draw
from depthscope.experiments.training.loop import TrainJob, TrainSettings, learning_rate, train
from depthscope.experiments.training.models import ModelSize, build_model
from depthscope.experiments.training.packed_windows import (
    TokenizedExample,
    pack_batch,
    token_loss,
    tokenize_example,
)
from depthscope.experiments.training.tokenizer import char_tokenizer

TOKENIZER = char_tokenizer()
PAD = TOKENIZER.pad_token_id
SEP = tuple(TOKENIZER("\n", add_special_tokens=False)["input_ids"])
TINY = ModelSize(layers=2, d_model=32, heads=2, group_size=2, n_experts=4, expert_size=16)
FAST = dict(batch_size=4, seq_len=48, warmup=2, checkpoint_every=2, log_every=1, eval_every=0)


def make_job(tmp_path, arch="transformer", draw=None, eval_sets=None, seed=0, name="run"):
    model = build_model(arch, TINY, len(TOKENIZER), PAD, TOKENIZER.eos_token_id, seed=seed)
    return TrainJob(
        model=model,
        tokenizer=TOKENIZER,
        draw=draw or training_draw(TOKENIZER, "dm"),
        eval_sets=eval_sets or {},
        pad_id=PAD,
        out=tmp_path / name,
        identity={"test": arch, "seed": seed},
        separator=SEP,
    )


def weights(folder):
    return load_file(folder / "model.safetensors")


# ---------------------------------------------------------------- packing and loss masking


def test_windows_hold_whole_examples_with_answer_flags():
    draw = training_draw(TOKENIZER, "dm")
    batch = pack_batch(draw, seed=0, step=3, rows=3, seq_len=64, pad_id=PAD, separator=SEP)
    again = pack_batch(draw, seed=0, step=3, rows=3, seq_len=64, pad_id=PAD, separator=SEP)
    assert torch.equal(batch.input_ids, again.input_ids)
    assert not torch.equal(
        batch.input_ids,
        pack_batch(draw, seed=0, step=4, rows=3, seq_len=64, pad_id=PAD, separator=SEP).input_ids,
    )
    for row in range(3):
        n = int(batch.valid[row].sum())
        assert batch.valid[row, :n].all() and not batch.valid[row, n:].any()  # right-padded
        text = TOKENIZER.decode(batch.input_ids[row, :n].tolist())
        examples = text.split("\n")
        answers = TOKENIZER.decode(batch.input_ids[row][batch.answer[row]].tolist())
        assert all(e.startswith("Q: ") and " A: " in e for e in examples)  # never split
        assert answers == "".join(" " + e.rsplit(" A: ", 1)[1] for e in examples)


def test_answer_only_loss_ignores_question_predictions():
    batch = pack_batch(
        training_draw(TOKENIZER, "dm"),
        seed=1,
        step=0,
        rows=2,
        seq_len=64,
        pad_id=PAD,
        separator=SEP,
    )
    logits = torch.randn(2, 64, len(TOKENIZER), requires_grad=True)
    token_loss(logits, batch, "answer").backward()
    predicts_answer = torch.zeros_like(batch.answer)
    predicts_answer[:, :-1] = batch.answer[:, 1:]  # position t predicts token t+1
    grad_norm = logits.grad.norm(dim=-1)
    assert (grad_norm[~predicts_answer] == 0).all()
    assert (grad_norm[predicts_answer] > 0).all()
    # the loss is the same whatever the model predicts while reading the question
    scrambled = logits.detach().clone()
    scrambled[~predicts_answer] = torch.randn_like(scrambled[~predicts_answer])
    assert token_loss(scrambled, batch, "answer") == token_loss(logits.detach(), batch, "answer")
    # with loss on all tokens, question predictions do count
    logits.grad = None
    token_loss(logits, batch, "all").backward()
    predicts_real = torch.zeros_like(batch.valid)
    predicts_real[:, :-1] = batch.valid[:, 1:]
    assert (logits.grad.norm(dim=-1)[predicts_real & ~predicts_answer] > 0).all()


def test_learning_rate_schedule():
    cosine = TrainSettings(steps=110, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert learning_rate(cosine, 0) == pytest.approx(0.1)
    assert learning_rate(cosine, 9) == pytest.approx(1.0)
    assert learning_rate(cosine, 60) == pytest.approx(0.55)
    assert learning_rate(cosine, 109) == pytest.approx(0.1, abs=1e-3)
    constant = TrainSettings(steps=110, lr=2e-5, warmup=10, schedule="constant")
    assert learning_rate(constant, 100) == 2e-5


# ---------------------------------------------------------------- training runs


@pytest.mark.parametrize("arch", ["transformer", "shared"])
def test_training_is_deterministic_for_a_seed(tmp_path, arch):
    settings = TrainSettings(steps=3, **FAST)
    first = train(make_job(tmp_path, arch, name="a"), settings, RecordingProgress())
    second = train(make_job(tmp_path, arch, name="b"), settings, RecordingProgress())
    assert first["loss_curve"] == second["loss_curve"]
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = TrainSettings(steps=3, seed=1, **FAST)
    third = train(make_job(tmp_path, arch, name="c"), other, RecordingProgress())
    assert third["loss_curve"] != first["loss_curve"]


def copy_digit(rng: random.Random) -> TokenizedExample:
    """'Q: 7 A:' -> ' 7': learnable only by looking back at the question."""
    from depthscope.data.example import Example

    digit = str(rng.randrange(10))
    return tokenize_example(TOKENIZER, Example(prompt=f"Q: {digit} A:", answer=f" {digit}"))


def test_tiny_run_learns_a_trivial_task(tmp_path):
    held_out = [copy_digit(random.Random(i)) for i in range(30)]
    settings = TrainSettings(
        steps=60, lr=1e-2, batch_size=8, seq_len=32, warmup=5, loss="answer", checkpoint_every=1000
    )
    job = make_job(tmp_path, draw=copy_digit, eval_sets={"copy": held_out})
    record = train(job, settings, RecordingProgress())
    first, last = record["evaluations"][0], record["evaluations"][-1]
    assert first["step"] == 0 and first["accuracy"]["copy"] < 0.5
    assert last["step"] == 60 and last["accuracy"]["copy"] == 1.0
    curve = record["loss_curve"]
    assert sum(curve[-10:]) / 10 < 0.1 * sum(curve[:10]) / 10


class InterruptAt(RecordingProgress):
    """Simulates Ctrl-C after ``stop`` completed steps."""

    def __init__(self, stop: int) -> None:
        super().__init__()
        self.stop, self.done = stop, 0

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self.done >= self.stop:
            raise KeyboardInterrupt


@pytest.mark.parametrize("arch,stop", [("transformer", 4), ("shared", 5)])
def test_resumed_run_equals_uninterrupted(tmp_path, arch, stop):
    settings = TrainSettings(steps=7, **FAST)
    whole = train(make_job(tmp_path, arch, name="whole"), settings, RecordingProgress())
    with pytest.raises(KeyboardInterrupt):
        train(make_job(tmp_path, arch, name="cut"), settings, InterruptAt(stop))
    assert (tmp_path / "cut" / run_dir.CHECKPOINT).is_file()
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    progress = RecordingProgress()
    resumed = train(make_job(tmp_path, arch, name="cut", seed=0), settings, progress)
    assert any("resuming from the checkpoint at step 4" in n for n in progress.notes)
    assert resumed["loss_curve"] == whole["loss_curve"]
    a, b = weights(tmp_path / "whole"), weights(tmp_path / "cut")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "cut" / run_dir.CHECKPOINT).exists()  # dropped once finished


def test_finished_run_is_left_alone_and_other_settings_refused(tmp_path):
    settings = TrainSettings(steps=2, **FAST)
    train(make_job(tmp_path), settings, RecordingProgress())
    before = (tmp_path / "run" / "model.safetensors").read_bytes()
    progress = RecordingProgress()
    train(make_job(tmp_path), settings, progress)
    assert any("nothing to do" in n for n in progress.notes)
    with pytest.raises(DepthscopeError, match="other settings.*--fresh"):
        train(make_job(tmp_path), TrainSettings(steps=3, **FAST), RecordingProgress())
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == before
    train(make_job(tmp_path), TrainSettings(steps=3, **FAST), RecordingProgress(), fresh=True)
    assert json.loads((tmp_path / "run" / "training.json").read_text())["steps_done"] == 3


def test_record_holds_settings_curve_accuracy_and_time(tmp_path):
    held_out = [copy_digit(random.Random(i)) for i in range(4)]
    settings = TrainSettings(steps=2, **FAST)
    train(make_job(tmp_path, eval_sets={"group/copy": held_out}), settings, RecordingProgress())
    record = json.loads((tmp_path / "run" / "training.json").read_text())
    assert record["status"] == "complete" and record["settings"]["steps"] == 2
    assert len(record["loss_curve"]) == 2 and record["seconds"] > 0
    assert [e["step"] for e in record["evaluations"]] == [0, 2]
    assert set(record["final_accuracy"]["mean_accuracy"]) == {"group"}


# ---------------------------------------------------------------- refusing bad input


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(steps=0), "--steps must be at least 1"),
        (dict(steps=2, loss="question"), "--loss must be one of"),
        (dict(steps=2, lr=0.0), "--lr must be positive"),
    ],
)
def test_bad_settings_are_refused(tmp_path, change, message):
    settings = TrainSettings(**{**FAST, **change})
    with pytest.raises(DepthscopeError, match=message):
        train(make_job(tmp_path), settings, RecordingProgress())
    assert not (tmp_path / "run").exists()


def test_folder_with_another_model_or_foreign_files_is_never_touched(tmp_path):
    other = tmp_path / "run"
    build_model("transformer", TINY, 50, 0, 1, seed=3).save_pretrained(other)
    before = {p.name: p.read_bytes() for p in other.iterdir()}
    with pytest.raises(DepthscopeError, match="holds another model"):
        train(make_job(tmp_path), TrainSettings(steps=2, **FAST), RecordingProgress(), fresh=True)
    assert {p.name: p.read_bytes() for p in other.iterdir()} == before
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    with pytest.raises(DepthscopeError, match="files depthscope did not write"):
        train(make_job(tmp_path, name="notes"), TrainSettings(steps=2, **FAST), RecordingProgress())
    assert [p.name for p in foreign.iterdir()] == ["thesis.tex"]


def test_checkpoint_restores_tied_weights_optimizer_and_rng(tmp_path):
    import transformers as tf

    def tied_llama():
        torch.manual_seed(0)
        config = tf.LlamaConfig(
            vocab_size=50,
            hidden_size=16,
            intermediate_size=32,
            num_attention_heads=2,
            num_hidden_layers=1,
            tie_word_embeddings=True,
        )
        return tf.LlamaForCausalLM(config)

    model = tied_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(input_ids=torch.tensor([[1, 2, 3]])).logits.sum().backward()
    optimizer.step()
    torch.manual_seed(7)
    run_dir.save_checkpoint(tmp_path, model, optimizer, {"train_state": {"step": 1}})
    expected_draw = torch.rand(3)

    fresh = tied_llama()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    meta = run_dir.load_checkpoint(tmp_path, fresh, fresh_optimizer)
    assert meta["train_state"] == {"step": 1}
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # still tied
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    state = optimizer.state_dict()["state"]
    restored = fresh_optimizer.state_dict()["state"]
    assert all(torch.equal(state[k]["exp_avg"], restored[k]["exp_avg"]) for k in state)
    assert torch.equal(torch.rand(3), expected_draw)  # the RNG continues where it was saved

    # a checkpoint whose files belong to different steps (torn by a crash) is refused
    state = json.loads((tmp_path / run_dir.CHECKPOINT).read_text())
    state["stamp"] = "2"  # the record of step 2 beside the tensor files of step 1
    (tmp_path / run_dir.CHECKPOINT).write_text(json.dumps(state))
    with pytest.raises(DepthscopeError, match="damaged.*--fresh"):
        run_dir.load_checkpoint(tmp_path, fresh, fresh_optimizer)
