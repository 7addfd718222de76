"""Is the Hugging Face hub reachable? Answered in a few seconds, not after 28 s of retries.

Without a network, ``from_pretrained`` of a hub id retries its HTTP requests for half a minute
before giving up. One TCP connection attempt to the hub (or to the HTTPS proxy) with a short
timeout says the same at once; when it fails, models are looked up in the local Hugging Face
cache only (``local_files_only``), so cached hub models still load offline.
"""

from __future__ import annotations

import difflib
import functools
import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path

from depthscope.models.loading.zoo import BUILTIN_MODELS

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def offline_requested() -> bool:
    """The user asked for no hub access (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _probe_address(endpoint: str) -> tuple[str, int] | None:
    """Where a connection to ``endpoint`` goes first: the proxy if one applies, else the host."""
    parsed = urllib.parse.urlsplit(endpoint)
    host = parsed.hostname
    if not host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if proxied.hostname:
            return proxied.hostname, proxied.port or 8080
    return host, port


@functools.cache
def _reachable(endpoint: str, timeout: float) -> bool:
    address = _probe_address(endpoint)
    if address is None:
        return False
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:  # DNS failure, refused, unreachable, timed out
        return False


def hub_available(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Not asked to stay offline, and a TCP connection to the hub opens within ``timeout``."""
    return not offline_requested() and _reachable(hub_endpoint(), timeout)


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
