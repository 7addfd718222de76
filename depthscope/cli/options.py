"""Option helpers every command shares: the model's placement, --set items, batch sizes, names.

Commands add their model options through :func:`add_model_options`, so ``--device``, ``--dtype``
and ``--device-map`` read the same everywhere; the handlers load the model they name with
:func:`depthscope.cli.handlers.common.load_from_options`. Light: parsing imports no torch.
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.models.loading.quantize import KINDS as QUANTIZE_KINDS


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--dtype``, ``--device-map``, ``--quantize`` and ``--no-load-check``, as every
    command that loads a model takes them."""
    parser.add_argument(
        "--device", default="cpu", help="torch device, e.g. cpu, cuda, cuda:1 (default: cpu)"
    )
    parser.add_argument(
        "--dtype",
        default=None,
        help="float32 (default), bfloat16 or float16; low precision is meant for GPUs",
    )
    parser.add_argument(
        "--device-map",
        default=None,
        help="passed to from_pretrained, e.g. auto to spread a large model over GPUs",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE_KINDS,
        default=None,
        help="load the linear weights in int8 (LLM.int8, as the paper ran Llama 70B) or nf4 "
        "through bitsandbytes; measurements stay in --dtype",
    )
    parser.add_argument(
        "--no-load-check",
        dest="load_check",
        action="store_false",
        help="skip the proof, on a short probe at load time, that the adapter's pieces add up to "
        "each layer's output and replay to the model's logits (run.json records the skip)",
    )


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``--set KEY=VALUE`` items as a dict (a dash in a key reads as an underscore)."""
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DepthscopeError(f"--set expects KEY=VALUE, got {item!r}")
        prefix, dot, name = key.strip().rpartition(".")
        overrides[f"{prefix}{dot}{name.replace('-', '_')}"] = value.strip()
    return overrides


def batch_size(text: str) -> int | str:
    """argparse type of --batch-size: a positive integer or "auto"."""
    if text == "auto":
        return text
    try:
        return int(text)  # the range is checked with the other settings, in one clear line
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or auto, got {text!r}"
        ) from None


def model_stem(spec: str) -> str:
    """A short name for a model given as a built-in name, hub id, folder or ``.gguf`` file."""
    name = Path(spec.rstrip("/")).name
    return (Path(name).stem if name.endswith(".gguf") else name) or "model"


def quiet_libraries() -> None:
    """Keep transformers' warnings and progress bars off the terminal (``--verbose`` shows them)."""
    # heavy: transformers is imported once a command runs, never for --help or a refused option
    from transformers.utils import logging as hf_logging

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
