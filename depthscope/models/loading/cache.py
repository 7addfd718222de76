"""Where depthscope keeps converted models: ``$DEPTHSCOPE_CACHE`` or the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """``$DEPTHSCOPE_CACHE`` if set, else the user cache directory; created on demand."""
    env = os.environ.get("DEPTHSCOPE_CACHE")
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("depthscope"))
    root.mkdir(parents=True, exist_ok=True)
    return root
