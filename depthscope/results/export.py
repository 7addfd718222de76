"""Every saved result of a run as a tidy table (CSV or Parquet), for ``depthscope export``.

One row per number: analysis, quantity, prompt, layer, layer2 (layer × layer maps) or position
(layer × token maps), value — ready for pandas, R or a spreadsheet.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from depthscope.core.errors import DepthscopeError
from depthscope.core.files import atomic_write_bytes
from depthscope.results.document import TIDY_COLUMNS, Result

FORMATS = ("csv", "parquet")


def csv_bytes(rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(TIDY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def parquet_bytes(result: Result) -> bytes:
    try:
        frame = result.to_pandas()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
    except ImportError:
        raise DepthscopeError(
            "parquet export needs pandas and pyarrow; `pip install pandas pyarrow`, or use "
            "--format csv"
        ) from None
    return buffer.getvalue()


def export_run(run_dir: Path, fmt: str = "csv", out: Path | None = None) -> list[Path]:
    """Write one table per saved result; returns the files written."""
    results = sorted(Path(run_dir).glob("results/*.json"))
    if not results:
        raise DepthscopeError(
            f"{run_dir} has no results/*.json; pass a run directory written by depthscope analyze"
        )
    folder = Path(out) if out is not None else Path(run_dir) / "export"
    written = []
    for path in results:
        result = Result.load(path)
        blob = csv_bytes(list(result.tidy())) if fmt == "csv" else parquet_bytes(result)
        target = folder / f"{result.analysis}.{fmt}"
        atomic_write_bytes(target, blob)
        written.append(target)
    return written
