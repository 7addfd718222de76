"""Current and future effects requested together (one shared replay per prompt and part) against
the two run separately, in one run, with their results compared.

    python benchmarks/bench_shared.py                 # smollm2-135m, 4 prompts, every part
    python benchmarks/bench_shared.py -n 10           # the default job's prompt count
    python benchmarks/bench_shared.py --quick         # tiny random model (smoke)

Each configuration is a fresh `depthscope analyze` in its own folder, one after the other
(separate, together, separate, together: a drifting machine favours neither); the time is the
sum of the two analyses' own `seconds` in their results. Writes benchmarks/results/shared.json
(``shared_quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAIR = ("current-effects", "future-effects")
KEYS = ("effect", "output_change", "effect_position_mean", "output_change_position_mean")


def analyze(model: str, analyses: str, out: Path, n: int) -> None:
    command = [sys.executable, "-m", "depthscope", "analyze", model, "--analyses", analyses]
    command += ["--out", str(out), "-n", str(n), "--no-plots", "--fresh"]
    subprocess.run(command, check=True, capture_output=True, text=True)


def seconds_and_data(folder: Path, name: str) -> tuple[float, dict]:
    doc = json.loads((folder / "results" / f"{name}.json").read_text())
    return doc["seconds"], doc["data"]


def largest_difference(a: dict, b: dict) -> float:
    worst = 0.0
    for key in KEYS:
        x, y = np.asarray(a[key], dtype=float), np.asarray(b[key], dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        worst = max(worst, float(np.abs(x[finite] - y[finite]).max(initial=0.0)))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2, help="1: separate then together only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if args.quick:
            sys.path.insert(0, str(ROOT / "tests"))
            from tiny_models import save_tiny_model_dir

            model = str(save_tiny_model_dir(Path(tmp) / "tiny"))
        times = {"separate": [], "together": []}
        data = {}
        for round_ in range(args.rounds):
            for mode in ("separate", "together") if round_ == 0 else ("together", "separate"):
                folder = Path(tmp) / f"{mode}{round_}"
                if mode == "together":
                    analyze(model, ",".join(PAIR), folder, args.n)
                    parts = [seconds_and_data(folder, name) for name in PAIR]
                else:
                    parts = []
                    for name in PAIR:
                        analyze(model, name, folder / name, args.n)
                        parts.append(seconds_and_data(folder / name, name))
                times[mode].append(sum(seconds for seconds, _ in parts))
                data[mode] = [d for _, d in parts]
    separate, together = sum(times["separate"]), sum(times["together"])
    report = {
        "model": "tiny random llama" if args.quick else args.model,
        "prompts": args.n,
        "analyses": list(PAIR),
        "seconds": {mode: [round(t, 2) for t in ts] for mode, ts in times.items()},
        "speedup": round(separate / together, 3),
        "max_abs_difference": max(
            largest_difference(a, b)
            for a, b in zip(data["separate"], data["together"], strict=True)
        ),
    }
    out = RESULTS / ("shared_quick.json" if args.quick else "shared.json")
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{report['model']}, {args.n} prompts: separate {times['separate']} s, together "
        f"{times['together']} s -> {report['speedup']}x; max abs difference "
        f"{report['max_abs_difference']:.1e}; written to {out}"
    )


if __name__ == "__main__":
    main()
