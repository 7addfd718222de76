"""Is the Hugging Face hub reachable? One rule for every caller, answered in seconds.

Without a network, ``from_pretrained`` and ``datasets.load_dataset`` retry their HTTP requests for
half a minute before giving up. One TCP connection attempt to the hub (or to the HTTPS proxy that
a request to the hub would go through) with a short timeout says the same at once. Models, hub
datasets and ``--preset paper`` all ask :func:`hub_reachable`; the answer is remembered for the
process, per endpoint.

Whether the user asked for no hub access at all is a separate question
(:func:`offline_requested`): ``HF_HUB_OFFLINE`` holds for every Hugging Face library, and each
library adds its own variable (``TRANSFORMERS_OFFLINE`` for transformers).
"""

from __future__ import annotations

import functools
import os
import socket
import urllib.parse
import urllib.request

PROBE_TIMEOUT_S = 3.0
HUB_OFFLINE = "HF_HUB_OFFLINE"  # honoured by every Hugging Face library
_TRUE = {"1", "on", "yes", "true"}


def offline_requested(*library_variables: str) -> bool:
    """The user asked for no hub access: ``HF_HUB_OFFLINE``, or one of ``library_variables``
    (e.g. ``TRANSFORMERS_OFFLINE``), is set to 1/on/yes/true."""
    return any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in (HUB_OFFLINE, *library_variables)
    )


def hub_endpoint() -> str:
    """The hub's address: ``HF_ENDPOINT`` or https://huggingface.co."""
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


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connection to the hub (through the proxy that applies, if any) opens within
    ``timeout``; asked once per endpoint and timeout in a process."""
    return _reachable(hub_endpoint(), timeout)


def hub_available(*library_variables: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Not asked to stay offline (:func:`offline_requested`), and the hub is reachable."""
    return not offline_requested(*library_variables) and hub_reachable(timeout)
