"""The hub as model loading sees it: offline by choice, reachable, and the local cache.

Whether the hub answers is :mod:`depthscope.core.hub_access`'s one rule (a TCP connection to the
hub or its proxy, in seconds, not after 28 s of retries); transformers also honours
``TRANSFORMERS_OFFLINE``. When the hub is not available, models are looked up in the local
Hugging Face cache only (``local_files_only``), so cached hub models still load offline.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from depthscope.core import hub_access
from depthscope.core.hub_access import PROBE_TIMEOUT_S, hub_endpoint
from depthscope.models.loading.zoo import BUILTIN_MODELS

__all__ = [
    "PROBE_TIMEOUT_S",
    "cached_revision",
    "hub_available",
    "hub_endpoint",
    "in_local_cache",
    "nearest_builtin",
    "offline_requested",
]

OFFLINE_VARIABLE = "TRANSFORMERS_OFFLINE"  # transformers' own, beside HF_HUB_OFFLINE


def offline_requested() -> bool:
    """The user asked for no hub access (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return hub_access.offline_requested(OFFLINE_VARIABLE)


def hub_available() -> bool:
    """Not asked to stay offline, and a TCP connection to the hub opens within seconds."""
    return hub_access.hub_available(OFFLINE_VARIABLE)


def nearest_builtin(spec: str) -> str | None:
    """The built-in model name closest to ``spec`` (for typos like ``smollm2-999m``), if any."""

    name = spec.rstrip("/").split("/")[-1].lower()
    matches = difflib.get_close_matches(name, list(BUILTIN_MODELS), n=1, cutoff=0.6)
    return matches[0] if matches else None


def in_local_cache(repo_id: str) -> bool:
    """The local Hugging Face cache holds ``repo_id``'s config (checked without transformers)."""
    try:
        from huggingface_hub import try_to_load_from_cache  # only where the hub is used

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # a malformed id or an unreadable cache: not usable offline
        return False
    return isinstance(found, str)


def cached_revision(repo_id: str) -> str | None:
    """The commit hash of ``repo_id``'s snapshot in the local Hugging Face cache, if any.

    Downloaded files live in ``.../snapshots/<commit>/``, so the folder of the cached config names
    the revision that was loaded, online or offline.
    """
    try:
        from huggingface_hub import try_to_load_from_cache  # only where the hub is used

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # a malformed id or an unreadable cache
        return None
    if not isinstance(found, str):
        return None
    parent = Path(found).parent
    return parent.name if parent.parent.name == "snapshots" else None
