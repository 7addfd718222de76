"""``python -m depthscope``: the same command as ``depthscope``, which ``torchrun -m depthscope`` needs."""

import sys

from depthscope.cli import main

if __name__ == "__main__":
    sys.exit(main())
