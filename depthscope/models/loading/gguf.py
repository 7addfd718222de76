"""Convert a GGUF file into a plain fp32 safetensors model folder, once.

Loading a GGUF through transformers unpacks (dequantises) every weight: 20-60 s for the built-in
models, every time. We do it once, save an ordinary fp32 folder, and from then on loading takes
about a second. The saved folder must be the GGUF model exactly, so before it is accepted it is
reloaded and must give bit-identical logits and the same token ids.

A folder is built beside its destination and renamed into place, and its marker file
(``depthscope.json``, the provenance) is written last, so a half-built or damaged folder never
passes :func:`folder_is_valid` and gets rebuilt instead of loaded.

This module imports only the standard library at import time: checking a cached folder must stay
cheap (well under 0.1 s), so torch, transformers and rich are imported where they are needed.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from depthscope.core.errors import DepthscopeError, first_line
from depthscope.models.loading.cache import cache_dir

if TYPE_CHECKING:
    import torch

MARKER = "depthscope.json"
CACHE_FORMAT = 1  # bump when the folder layout changes: older folders then count as invalid
_MAX_HEADER = 100 << 20  # a safetensors header larger than this is damage, not metadata
_STALE_SECONDS = 24 * 3600  # temporary folders this old are leftovers of a crashed build
_PROBE_TOKENS = 12
_PROBE_TEXT = "The capital of France is Paris.\n\n  Ünïcödé 🙂 数字 12345\tdef f(x): return x**2"


class Steps:
    """What a slow build is doing: a spinner or bar per stage, then a tick and its duration.

    The console is bound to the stderr of the moment it is created, so silencing transformers
    (which swaps ``sys.stderr`` for a while) leaves this display visible.
    """

    def __init__(self, enabled: bool) -> None:
        self._console = None
        if enabled:
            # imported on use: the zoo imports this module and stays free of torch/transformers/rich
            from rich.console import Console

            self._console = Console(file=sys.stderr, highlight=False)

    def note(self, text: str) -> None:
        """One plain line (not markup: paths and package names may contain brackets)."""
        if self._console is not None:
            self._console.print(text, markup=False)

    def _done(self, label: str, started: float) -> None:
        # imported on use: the zoo imports this module and stays free of torch/transformers/rich
        from rich.markup import escape

        seconds = time.perf_counter() - started
        self._console.print(f"[green]✓[/] {escape(label)} [dim]({seconds:.1f} s)[/]")

    @contextlib.contextmanager
    def step(self, label: str) -> Iterator[Callable[[str], None]]:
        """Spinner while the stage runs; yields a function that changes the spinner's text."""
        if self._console is None:
            yield lambda text: None
            return
        # imported on use: the zoo imports this module and stays free of torch/transformers/rich
        from rich.markup import escape

        started = time.perf_counter()
        with self._console.status(escape(label)) as status:
            yield lambda text: status.update(escape(text))
        self._done(label, started)

    @contextlib.contextmanager
    def bar(self, label: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
        """Byte progress bar while the stage runs; yields ``advance(n_bytes)``."""
        if self._console is None or not self._console.is_terminal:  # a bar is only for live eyes
            with self.step(label):
                yield lambda n: None
            return
        # imported on use: the zoo imports this module and stays free of torch/transformers/rich
        from rich.markup import escape
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        started = time.perf_counter()
        columns = (TextColumn(escape(label)), BarColumn(), DownloadColumn(), TransferSpeedColumn())
        with Progress(*columns, console=self._console, transient=True) as bars:
            task = bars.add_task(label, total=total_bytes)
            yield lambda n: bars.advance(task, n)
        self._done(label, started)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (GGUF files are hundreds of MB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _safetensors_ok(path: Path) -> bool:
    """Header parses and the file is exactly as long as the header says (catches truncation)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if not 0 < header_len <= min(size - 8, _MAX_HEADER):
                return False
            header = json.loads(handle.read(header_len))
        ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    except (OSError, struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False
    return bool(ends) and 8 + header_len + max(ends) == size


def _weight_files(folder: Path) -> list[Path] | None:
    """The safetensors files the folder should have (from the shard index if sharded)."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return [folder / "model.safetensors"]
    try:
        return [
            folder / name
            for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))
        ]
    except (OSError, ValueError, KeyError, AttributeError):
        return None


def folder_is_valid(folder: Path) -> bool:
    """Cheap completeness check: marker of this cache format, config, tokenizer, intact weights."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
        json.loads((folder / "config.json").read_text())
        json.loads((folder / "tokenizer_config.json").read_text())
    except (OSError, ValueError):
        return False
    weights = _weight_files(folder)
    return (
        isinstance(marker, dict)
        and marker.get("cache_format") == CACHE_FORMAT
        and bool(weights)
        and all(_safetensors_ok(w) for w in weights)
    )


def read_provenance(folder: Path) -> dict:
    """The folder's ``depthscope.json`` (empty if absent or unreadable)."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' logs, warnings and tqdm bars (ours say what is happening).

    The GGUF loader's tqdm bar ignores transformers' progress-bar switch, hence the stderr swap.
    """
    # imported on use: the zoo imports this module and stays free of torch/transformers/rich
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _unpacked() -> dict[str, Any]:
    """``from_pretrained`` arguments that make transformers unpack every GGUF weight to dense.

    transformers >= 5 may keep weights in GGUF blocks when a matmul kernel is installed, and marks
    the model as quantised either way; asking for dequantisation gives a plain model with no
    quantiser attached, which ``save_pretrained`` saves normally. Older versions always unpack.
    """
    try:
        # imported on use: the zoo imports this module and stays free of torch/transformers/rich
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def _load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    """The GGUF file as a dense fp32 causal LM and its tokenizer."""
    # imported on use: the zoo imports this module and stays free of torch/transformers/rich
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where, name = str(gguf_path.parent), gguf_path.name
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
            model = AutoModelForCausalLM.from_pretrained(
                where, gguf_file=name, dtype=torch.float32, **_unpacked()
            )
    except Exception as exc:  # any loader failure is a problem with this file, said in one line
        first = first_line(exc, 200, fallback="")
        raise DepthscopeError(
            f"could not read {gguf_path} as a GGUF language model ({type(exc).__name__}: {first}); "
            "check that the file is complete and its architecture is one transformers supports"
        ) from exc
    return model.eval(), tokenizer


def _fingerprint(model: Any, tokenizer: Any) -> tuple[torch.Tensor, list[int]]:
    """What must survive the round trip exactly: logits on token ids spread over the vocabulary,
    and the token ids of a text with spaces, tabs, newlines, code, accents, emoji and CJK."""
    # imported on use: the zoo imports this module and stays free of torch/transformers/rich
    import torch

    vocab = model.get_input_embeddings().num_embeddings
    ids = torch.linspace(0, vocab - 1, _PROBE_TOKENS).long()[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return logits, tokenizer(_PROBE_TEXT).input_ids


def _save_gguf_as_folder(
    gguf_path: Path, staging: Path, steps: Steps
) -> tuple[torch.Tensor, list[int]]:
    """Load, save as safetensors, return the GGUF model's fingerprint.

    The GGUF model is freed on return, so checking the saved copy never holds two models.
    """
    with steps.step(f"unpacking {gguf_path.name} to fp32 (once)"):
        model, tokenizer = _load_gguf(gguf_path)
        reference = _fingerprint(model, tokenizer)
    with steps.step("saving fp32 safetensors"), _quiet_transformers():
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    return reference


def _check_reload(folder: Path, reference: tuple[torch.Tensor, list[int]], gguf_name: str) -> None:
    """The saved folder must give bit-identical logits and identical token ids, or it is not
    the GGUF model."""
    # imported on use: the zoo imports this module and stays free of torch/transformers/rich
    import torch
    import transformers

    with _quiet_transformers():
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    (logits, ids), (want_logits, want_ids) = _fingerprint(model.eval(), tokenizer), reference
    problem = None
    if ids != want_ids:
        problem = "tokenizer splits text differently"
    elif logits.shape != want_logits.shape or not torch.equal(logits, want_logits):
        problem = "logits differ"
    if problem:
        raise DepthscopeError(
            f"the converted copy of {gguf_name} is not the GGUF model ({problem}); please report "
            f"this with your transformers version ({transformers.__version__})"
        )


def _usual_permissions(folder: Path) -> None:
    """Give the folder the modes the umask allows (mkdtemp and some writers make them owner-only),
    so a cache shared between users works."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for path in folder.iterdir():
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def remove_stale(parent: Path, prefixes: tuple[str, ...]) -> None:
    """Delete temporary folders a crashed build left in ``parent`` (old enough not to be live)."""
    cutoff = time.time() - _STALE_SECONDS
    for prefix in prefixes:
        for leftover in parent.glob(f"{prefix}*"):
            if leftover.is_dir() and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)


def _install(staging: Path, out_dir: Path) -> None:
    """Move a finished folder into place; an old folder is first moved aside, then deleted.

    If another process installed a valid folder meanwhile, keep that one.
    """
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old."))
        os.replace(out_dir, old / out_dir.name)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(staging, out_dir)
    except OSError:
        if not folder_is_valid(out_dir):
            raise


def convert_gguf(
    gguf_path: Path,
    out_dir: Path,
    *,
    progress: bool = True,
    extra_provenance: dict | None = None,
    sha256: str | None = None,
) -> Path:
    """Save ``gguf_path`` as a dense fp32 safetensors folder at ``out_dir``, replacing it atomically.

    ``sha256`` spares re-hashing a file the caller has just hashed; ``extra_provenance`` entries
    (name, source, packages, ...) go into ``depthscope.json`` over the defaults.
    """
    # imported on use: the zoo imports this module and stays free of torch/transformers/rich
    import transformers

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    if not gguf_path.is_file():
        raise DepthscopeError(f"GGUF file {gguf_path} does not exist; check the path")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir.parent, (f".{out_dir.name}.build.", f".{out_dir.name}.old."))
    steps = Steps(progress)
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.build."))
    try:
        reference = _save_gguf_as_folder(gguf_path, staging, steps)
        with steps.step("checking the saved copy gives the same tokens and logits"):
            _check_reload(staging, reference, gguf_path.name)
        provenance = {
            "name": gguf_path.stem,
            "source": f"gguf:{gguf_path.resolve()}",
            "packages": [],
            "gguf_file": gguf_path.name,
            "gguf_sha256": sha256 or file_sha256(gguf_path),
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "convert_seconds": round(time.perf_counter() - started, 1),
            "transformers": transformers.__version__,
            "cache_format": CACHE_FORMAT,
            **(extra_provenance or {}),
        }
        (staging / MARKER).write_text(json.dumps(provenance, indent=1) + "\n")
        _usual_permissions(staging)
        _install(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def gguf_folder(gguf_path: Path, *, progress: bool = True) -> Path:
    """The converted folder of a user's GGUF file, keyed by content so it is built only once."""

    gguf_path = Path(gguf_path).expanduser()
    if not gguf_path.is_file():
        raise DepthscopeError(f"GGUF file {gguf_path} does not exist; check the path")
    digest = file_sha256(gguf_path)
    folder = cache_dir() / "gguf" / digest[:16]
    if folder_is_valid(folder):
        return folder
    steps = Steps(progress)
    if folder.exists():
        steps.note(f"cached conversion of {gguf_path.name} in {folder} is damaged; rebuilding it")
    else:
        steps.note(f"converting {gguf_path.name} once; it will be cached in {folder}")
    return convert_gguf(gguf_path, folder, progress=progress, sha256=digest)
