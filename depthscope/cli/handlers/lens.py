"""``depthscope lens train MODEL --out DIR``: train a tuned lens and say how it reads."""

from __future__ import annotations

import argparse

import numpy as np

from depthscope.cli.handlers.common import (
    apply_threads,
    claim_for,
    inspect_from_options,
    load_from_options,
)
from depthscope.cli.lens import settings_from_args
from depthscope.core.folders import OutputFolder, friendly_os_errors
from depthscope.core.progress import make_progress
from depthscope.core.run_folder import LENS_OUTPUTS
from depthscope.experiments.lens import train_lens


def run_lens_train(args: argparse.Namespace) -> int:
    apply_threads(args)
    settings = settings_from_args(args)  # checked by cli.lens.check
    guard = OutputFolder(args.out, outputs=LENS_OUTPUTS)
    guard.check()  # writable and holding nothing foreign, before the model loads
    with friendly_os_errors(args.out), make_progress() as progress, guard.lock(progress):
        info = inspect_from_options(args, args.model)
        claim_for(guard, info.identity, progress)  # one model's lens, before the weights load
        progress.note(f"loading {args.model}")
        lm = load_from_options(args, args.model, out=args.out, info=info)
        progress.note(
            f"{lm.name}: {lm.n_layers} layers, d={lm.d_model}; {settings.steps} steps of "
            f"{settings.batch}×{settings.seq_len} tokens from {settings.data}"
        )
        record = train_lens(lm, settings, args.out, progress, fresh=args.fresh)
    held = record["heldout"]["kl_lens_final"]
    logit, tuned = np.asarray(held["logit"]), np.asarray(held["tuned"])
    below = int((tuned < logit).sum())
    print(
        f"held-out KL(lens ‖ final) over {record['heldout']['tokens']} tokens: tuned below logit "
        f"at {below} of {logit.size} boundaries; mean {logit.mean():.3f} (logit) vs "
        f"{tuned.mean():.3f} (tuned); {record['tokens']} tokens in {record['seconds']:.0f} s"
    )
    print(
        f"lens in {args.out}/; read it with: depthscope analyze {args.model} --analyses "
        f"logit-lens --set logit-lens.lens=tuned:{args.out}"
    )
    return 0
