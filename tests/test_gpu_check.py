"""benchmarks/gpu_check.py runs end to end: its dry run (tiny shapes, bf16 on the CPU) passes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_check_dry_run_passes_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # as `python benchmarks/...` runs it
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gpu.json"
    assert script.main(["--dry-run", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["dry_run"] and doc["ok"] and set(doc["equality"]) == {"llama", "gemma3", "gpt_neox"}
    assert doc["out_of_memory_retry"]["chunks_refused"] > 0  # the retry really ran
    if importlib.util.find_spec("bitsandbytes") is not None:  # the dev extra installs it
        assert 0 < doc["int8"]["logit_lens_kl_relative_error"] <= script.INT8_TOLERANCE
    for label in ("1B", "8B"):
        analyses = doc["scale"][label]["analyses"]
        assert set(analyses) == set(script.ANALYSES)
        assert analyses["future-effects"]["fraction_of_peak"] > 0
