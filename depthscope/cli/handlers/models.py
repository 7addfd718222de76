"""``depthscope models``: the table of built-in models and whether they are cached."""

from __future__ import annotations

import argparse

from depthscope.models.loading.zoo import BUILTIN_MODELS, cache_dir, is_cached


def run_models(args: argparse.Namespace) -> int:
    header = ("name", "family", "layers", "width", "params", "download", "cached", "source")
    rows = [
        (
            name,
            info.family,
            str(info.layers),
            str(info.hidden_size),
            f"{info.params_m:.0f}M",
            f"{info.download_mb:.0f} MB",
            "yes" if is_cached(name) else "no",
            info.source,
        )
        for name, info in BUILTIN_MODELS.items()
    ]
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"cache: {cache_dir()} (set DEPTHSCOPE_CACHE to move it)")
    return 0
