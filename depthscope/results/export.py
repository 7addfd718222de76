"""Every saved result of a run as a tidy table (CSV or Parquet), for ``depthscope export``.

One row per number: analysis, quantity, prompt, layer, layer2 (layer × layer maps) or position
(layer × token maps), value — ready for pandas, R or a spreadsheet.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from depthscope.core.atomic_files import atomic_write_bytes
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.result import TIDY_COLUMNS, Result, run_identity
from depthscope.core.run_folder import RunFolder, export_outputs

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
    """Write one table per saved result; returns the files written.

    The output folder (``out``, default ``RUN_DIR/export``) is checked before anything is
    written, locked against a second command and claimed for the run's model, as every ``--out``
    is (:mod:`depthscope.core.folders`): tables of another model are never written over.
    """
    run = RunFolder(run_dir)
    files = run.result_files()
    if not files:
        raise DepthscopeError(
            f"{run_dir} has no results/*.json; pass a run directory written by depthscope analyze"
        )
    results = [Result.load(path) for path in files]
    folder = Path(out) if out is not None else run.export
    tables = export_outputs([r.analysis for r in results], fmt)  # <analysis>.<fmt>
    guard = OutputFolder(folder, outputs=tables)
    guard.check()
    owner = run_identity(run.path, results[0])
    written = []
    with friendly_os_errors(folder), guard.lock():
        guard.claim(owner["fingerprint"], owner["name"], owner["source"])
        for result, name in zip(results, tables, strict=True):
            blob = csv_bytes(list(result.tidy())) if fmt == "csv" else parquet_bytes(result)
            target = guard.path / name
            atomic_write_bytes(target, blob)
            written.append(target)
    return written
