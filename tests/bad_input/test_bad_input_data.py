"""Bad-input catalogue, part 2: ``--data`` files and prompts (issue 11).

Unreadable or malformed files are one error line before the model loads. Prompts the analyses
cannot use (too short, answers that are not the tail of the tokens, longer than the context
window) never give an empty or silently wrong result with exit 0.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import transformers as tf
from bad_input_support import (
    CHEAP,
    assert_error,
    assert_ok,
    cli_env,
    mask,
    result_doc,
    run_cli,
    snapshot,
)
from tiny_models import SAVED_CONTEXT, tiny_tokenizer


def analyze_file(capsys, model, tmp_path, name: str, content, *extra: str):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    out = tmp_path / "run"
    args = ["analyze", str(model), "--data", f"file:{path}", "--out", out, *CHEAP, *extra]
    return (*run_cli(capsys, *args), out)


def refuse_file(capsys, model, tmp_path, name, content, *fragments):
    code, stdout, err, out = analyze_file(capsys, model, tmp_path, name, content)
    assert_error(code, stdout, err, *fragments)
    assert not out.exists()


# ---------------------------------------------------------------- files that cannot be read


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("empty.txt", "", "no prompts"),
        ("blank.txt", "\n   \n\t\n", "no prompts"),
        ("binary.txt", bytes(range(256)) * 4, "UTF-8"),
        ("latin1.txt", "Caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1"), "UTF-8"),
        ("prompts.csv", "a,b\n", ".txt"),
        ("empty.jsonl", "", "no prompts"),
        ("bad.jsonl", '{"text": "fine"}\n{"text": "broken"\n', "line 2"),
        ("list.jsonl", "[1, 2, 3]\n", "JSON object"),
        ("nokey.jsonl", '{"question": "what?"}\n', "neither"),
        ("number.jsonl", '{"prompt": 12, "answer": "3"}\n', "must be a string"),
        ("answer.jsonl", '{"prompt": "1 + 2 =", "answer": 3}\n', "must be a string"),
        ("blankprompt.jsonl", '{"prompt": "   ", "answer": " 3"}\n', "empty"),
        ("level.jsonl", '{"text": "a b", "level": "hard"}\n', "level"),
        ("latin1.jsonl", '{"text": "caf\xe9"}\n'.encode("latin-1"), "UTF-8"),
    ],
)
def test_unusable_data_file(capsys, tiny_model_dir, tmp_path, name, content, fragment):
    refuse_file(capsys, tiny_model_dir, tmp_path, name, content, fragment)


def test_data_path_is_a_directory(capsys, tiny_model_dir, tmp_path):
    (tmp_path / "prompts.txt").mkdir()
    code, stdout, err = run_cli(
        capsys, "analyze", tiny_model_dir, "--data", f"file:{tmp_path / 'prompts.txt'}", *CHEAP
    )
    assert_error(code, stdout, err, "not a file")


def test_data_file_missing(capsys, tiny_model_dir, tmp_path):
    code, stdout, err = run_cli(
        capsys, "analyze", tiny_model_dir, "--data", f"file:{tmp_path / 'none.txt'}", *CHEAP
    )
    assert_error(code, stdout, err, "does not exist")


def test_file_source_without_path(capsys, tiny_model_dir):
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--data", "file:", *CHEAP)
    assert_error(code, stdout, err, "needs a path")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("builtin:nope", "unknown data source"),
        ("builtin:hops:9", "level 9 does not exist"),
        ("builtin:hops:two", "unknown data source"),
        ("builtin:text:3", "unknown data source"),
        ("gsm8k", "unknown data source"),
    ],
)
def test_unknown_data_source(capsys, tiny_model_dir, spec, fragment):
    code, stdout, err = run_cli(capsys, "analyze", tiny_model_dir, "--data", spec, *CHEAP)
    assert_error(code, stdout, err, fragment)


# ---------------------------------------------------------------- files that are fine


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_byte_order_mark_is_not_part_of_the_prompt(capsys, tiny_model_dir, tmp_path, suffix):
    """Files saved by Windows editors start with a UTF-8 BOM; it must not become a token."""
    line = "The final answer is 19" if suffix == ".txt" else '{"text": "The final answer is 19"}'
    counts = []
    for name, prefix in (("plain", ""), ("bom", "\ufeff")):
        code, stdout, err, out = analyze_file(
            capsys, tiny_model_dir, tmp_path / name, "p" + suffix, prefix + line + "\n"
        )
        assert_ok(code, stdout, err)
        counts.append(result_doc(out)["n_tokens"])
    assert counts[0] == counts[1]


def test_crlf_line_endings(capsys, tiny_model_dir, tmp_path):
    counts = []
    for name, newline in (("lf", "\n"), ("crlf", "\r\n")):
        text = newline.join(["Sara has 12 apples.", "She buys 7 more."]) + newline
        code, stdout, err, out = analyze_file(
            capsys, tiny_model_dir, tmp_path / name, "p.txt", text.encode()
        )
        assert_ok(code, stdout, err)
        counts.append(result_doc(out)["n_tokens"])
    assert counts[0] == counts[1]


def test_one_token_prompts_for_contributions(capsys, tiny_model_dir, tmp_path):
    code, stdout, err, out = analyze_file(capsys, tiny_model_dir, tmp_path, "short.txt", "a\nb\n")
    assert_ok(code, stdout, err)
    doc = result_doc(out)
    assert doc["n_prompts"] == 2 and doc["n_tokens"] == 4  # BOS + one token each


def test_one_token_prompts_leave_future_effects_empty(capsys, tiny_model_dir, tmp_path):
    """No split point fits in a 2-token prompt: an error saying why, not an empty result."""
    code, stdout, err, out = analyze_file(
        capsys, tiny_model_dir, tmp_path, "short.txt", "a\nb\n", "--analyses", "future-effects"
    )
    assert_error(code, stdout, err, "prompt")
    assert not (out / "results" / "future-effects.json").exists()


def test_front_beyond_every_prompt(capsys, tiny_model_dir, tmp_path):
    """``--set front`` ≥ every prompt's length leaves nothing to intervene on: an error."""
    code, stdout, err, out = analyze_file(
        capsys,
        tiny_model_dir,
        tmp_path,
        "p.txt",
        "Sara has 12 apples.\nShe buys 7 more.\n",
        "--analyses",
        "current-effects",
        "--set",
        "front=1000",
    )
    assert_error(code, stdout, err, "front")
    assert not (out / "results" / "current-effects.json").exists()


MERGING = [  # the answer merges with the prompt's last word: it is not the tail of the tokens
    {"prompt": "Sara has 12 apple", "answer": "s"},
    {"prompt": "She buys 7 m", "answer": "ore"},
]
FITTING = {"prompt": "The final answer is", "answer": " 19"}
IGRAD = ("--analyses", "igrad", "--set", "steps=2", "--set", "block=2")


def _answers_are_tails(rows) -> list[bool]:
    from depthscope.data.example import Example
    from depthscope.data.prompts import answer_length

    tok = tiny_tokenizer()
    return [
        answer_length(
            tok, Example(r["prompt"], r["answer"]), tok(r["prompt"] + r["answer"])["input_ids"]
        )
        is not None
        for r in rows
    ]


def test_every_answer_misplaced_is_an_error(capsys, tiny_model_dir, tmp_path):
    assert _answers_are_tails(MERGING) == [False, False]  # the case's premise
    text = "".join(json.dumps(r) + "\n" for r in MERGING)
    code, stdout, err, out = analyze_file(capsys, tiny_model_dir, tmp_path, "a.jsonl", text, *IGRAD)
    assert_error(code, stdout, err, "answer")
    assert not (out / "results" / "igrad.json").exists()


def test_some_answers_misplaced_are_summarised(capsys, tiny_model_dir, tmp_path):
    rows = [FITTING, MERGING[0]]
    assert _answers_are_tails(rows) == [True, False]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    code, stdout, err, out = analyze_file(capsys, tiny_model_dir, tmp_path, "a.jsonl", text, *IGRAD)
    assert_ok(code, stdout, err)
    said = mask(stdout + err).lower()
    assert re.search(r"skipped\D{0,3}1\b|\b1 prompts? (was )?skipped", said), said  # how many
    assert "answer" in said, said  # and why
    assert result_doc(out, "igrad")["n_prompts"] == 1


def test_prompts_without_answers_for_answer_analyses(capsys, tiny_model_dir, tmp_path):
    code, stdout, err, out = analyze_file(
        capsys, tiny_model_dir, tmp_path, "p.txt", "Sara has 12 apples.\n", *IGRAD
    )
    assert_error(code, stdout, err, "answer")
    assert not (out / "results" / "igrad.json").exists()


# ---------------------------------------------------------------- the context window


def _long_text(n_words: int) -> str:
    return " ".join(["apples"] * n_words)


def _assert_refused_or_truncated(code, stdout, err, out, limit: int, n_prompts: int) -> None:
    """Refused with one line, or truncated with a one-line notice: never analysed silently."""
    if code == 2:
        assert_error(code, stdout, err, "context window")
        return
    assert_ok(code, stdout, err)
    notices = [line for line in mask(stdout + err).splitlines() if "context window" in line]
    assert len(notices) == 1, stdout + err
    assert result_doc(out)["n_tokens"] <= limit * n_prompts


def test_prompt_longer_than_context_window(capsys, tiny_model_dir, tmp_path):
    code, stdout, err, out = analyze_file(
        capsys, tiny_model_dir, tmp_path, "long.txt", _long_text(1200) + "\nshort prompt\n"
    )
    _assert_refused_or_truncated(code, stdout, err, out, limit=SAVED_CONTEXT, n_prompts=2)


def test_prompt_longer_than_gpt2_positions(capsys, tmp_path):
    """GPT-2's learned positions raised an IndexError past n_positions."""
    tokenizer = tiny_tokenizer()
    config = tf.GPT2Config(
        vocab_size=len(tokenizer),
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=64,
        bos_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(0)
    tf.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    tokenizer.save_pretrained(tmp_path / "gpt2")
    code, stdout, err, out = analyze_file(
        capsys, tmp_path / "gpt2", tmp_path, "long.txt", _long_text(100) + "\n"
    )
    _assert_refused_or_truncated(code, stdout, err, out, limit=64, n_prompts=1)


# ---------------------------------------------------------------- how many prompts


@pytest.mark.parametrize("n", ["0", "-3"])
def test_n_below_one(capsys, tiny_model_dir, n):
    code, stdout, err = run_cli(
        capsys, "analyze", tiny_model_dir, "--analyses", "contributions", "-n", n
    )
    assert_error(code, stdout, err, "-n")


def test_n_beyond_a_fixed_source_is_capped(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys,
        "analyze",
        tiny_model_dir,
        "--data",
        "builtin:paper",
        "-n",
        "1000000000000",
        "--out",
        out,
        "--analyses",
        "contributions",
        "--no-plots",
    )
    assert_ok(code, stdout, err)
    assert result_doc(out)["n_prompts"] == 2


def _rss_bytes(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[0]) * 1024


def _watchdog(proc: subprocess.Popen, seconds: float, max_rss: int, why: list) -> None:
    """Kill ``proc`` if it runs too long or grows too big (this case used to eat all memory)."""
    started = time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - started > seconds:
            why.append(f"still silent after {seconds} s")
        elif _rss_bytes(proc.pid) > max_rss:
            why.append(f"memory above {max_rss >> 20} MiB")
        if why:
            proc.kill()
            return
        time.sleep(0.2)


MENTIONS_N = re.compile(r"(^|\s)-n(\s|$)|1000000000000")


def test_huge_n_for_a_generator_is_capped_before_generating(tiny_model_dir, tmp_path):
    """``-n 1000000000000`` grew memory without output; it must be capped with a notice at once."""
    args = ["analyze", str(tiny_model_dir), "-n", "1000000000000", "--out", str(tmp_path / "run")]
    args += ["--analyses", "contributions", "--no-plots"]
    main = "import sys; from depthscope.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", main, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=cli_env(),
    )
    why: list[str] = []
    guard = threading.Thread(target=_watchdog, args=(proc, 45, 1536 << 20, why), daemon=True)
    guard.start()
    said = []
    try:
        for line in proc.stdout:  # the notice (or the error) comes before any prompt is generated
            said.append(line)
            if MENTIONS_N.search(line):
                break
    finally:
        proc.kill()
        proc.communicate()
        guard.join()
    text = "".join(said)
    assert said and MENTIONS_N.search(said[-1]), f"{why}: {text}"
    assert "Traceback" not in text


def test_refused_data_leaves_existing_run_untouched(capsys, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    assert run_cli(capsys, "analyze", tiny_model_dir, "--out", out, *CHEAP)[0] == 0
    before = snapshot(out)
    (tmp_path / "bad.jsonl").write_text("{oops\n")
    code, stdout, err = run_cli(
        capsys,
        "analyze",
        tiny_model_dir,
        "--out",
        out,
        "--data",
        f"file:{tmp_path / 'bad.jsonl'}",
        *CHEAP,
    )
    assert_error(code, stdout, err, "not valid JSON")
    assert snapshot(out) == before
