"""Is the hub reachable? One rule (core/hub_access.py) for models, hub datasets and presets."""

from __future__ import annotations

import ast
import socket
import sys
import types
from pathlib import Path

import pytest

from depthscope.core import hub_access
from depthscope.core.errors import DepthscopeError
from depthscope.data import hub_datasets as data_hub
from depthscope.data.sources import load_examples
from depthscope.models.loading import hub as model_hub
from depthscope.run import presets

PACKAGE = Path(__file__).resolve().parents[2] / "depthscope"


@pytest.fixture
def probes(monkeypatch):
    """No real network: every connection attempt is recorded and refused; the answer is not
    remembered across tests."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    hub_access._reachable.cache_clear()
    attempts = []

    def refuse(address, timeout):
        attempts.append((address, timeout))
        raise OSError("unreachable")

    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    hub_access._reachable.cache_clear()


def test_unreachable_hub_answers_at_once(monkeypatch, probes):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    assert not hub_access.hub_available()
    assert probes == [(("hub.invalid", 443), hub_access.PROBE_TIMEOUT_S)]
    assert not hub_access.hub_reachable()  # remembered: asked once
    assert len(probes) == 1


def test_probe_goes_through_the_proxy(monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert hub_access._probe_address("https://huggingface.co") == ("proxy.example", 3128)


def test_offline_by_choice_is_hf_hub_offline_or_the_library_variable(monkeypatch, probes):
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert not hub_access.offline_requested()  # datasets does not read TRANSFORMERS_OFFLINE
    assert hub_access.offline_requested("TRANSFORMERS_OFFLINE")
    assert model_hub.offline_requested() and not model_hub.hub_available()
    monkeypatch.setenv("HF_HUB_OFFLINE", "yes")
    assert hub_access.offline_requested() and not hub_access.hub_available()
    assert probes == []  # offline by choice: the network is never asked


def test_hub_datasets_behind_a_proxy_are_probed_through_it(monkeypatch, probes):
    """Once data/hub_datasets.py assumed any proxy reachable; it now asks the one rule."""
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    loads = []
    fake = types.SimpleNamespace(load_dataset=lambda *a, **k: loads.append(a))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(DepthscopeError, match="could not reach the Hugging Face hub"):
        load_examples("hf:gsm8k", 1)
    assert probes == [(("proxy.example", 3128), hub_access.PROBE_TIMEOUT_S)] and not loads
    assert data_hub.hub_reachable is hub_access.hub_reachable


def test_the_paper_preset_asks_the_configured_endpoint(monkeypatch, probes):
    """Once run/presets.py probed huggingface.co:443 whatever HF_ENDPOINT said."""
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example:8443")
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace())
    assert not presets.hub_datasets()
    assert probes == [(("mirror.example", 8443), hub_access.PROBE_TIMEOUT_S)]


def test_only_core_opens_a_connection_to_ask():
    """One implementation: no other module of the package opens a socket to probe the hub."""
    callers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "create_connection":
                callers.append(str(path.relative_to(PACKAGE)))
    assert callers == ["core/hub_access.py"]
