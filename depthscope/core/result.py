"""Result documents: versioned JSON with the numbers and everything needed to interpret them.

A result file alone is enough to redraw its figures and to compare two models: it carries the
analysis name, schema version, model identity, settings, prompt and token counts and the data.
The same :class:`Result` object is what ``depthscope analyze`` saves and what
``depthscope.analyze(...)`` returns: ``.plot()``, ``.numbers()``, ``.to_pandas()``,
``.save(dir)``, and it shows itself in a notebook.

The document imports only the core, so it lives in the core and every layer (drawers, cards, the
verdict, the runner) reads it without importing upward: what a result looks like (figures, key
numbers, its notebook view) is its analysis's card, found by name in
:mod:`depthscope.core.registry`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from depthscope.core.atomic_files import atomic_write_json, to_jsonable
from depthscope.core.errors import DepthscopeError
from depthscope.core.folders import OutputFolder
from depthscope.core.registry import card as registered_card
from depthscope.core.run_folder import RunFolder, pair_identity

__all__ = ["Result", "SCHEMA_VERSION", "TIDY_COLUMNS"]

SCHEMA_VERSION = 1
TIDY_COLUMNS = ("analysis", "quantity", "prompt", "layer", "layer2", "position", "value")


@dataclass
class Result:
    """One analysis's output, as saved under ``results/<analysis>.json``."""

    analysis: str
    model: dict
    settings: dict
    n_prompts: int
    n_tokens: int
    data: dict
    schema_version: int = SCHEMA_VERSION
    extra: dict = field(default_factory=dict)

    # ------------------------------------------------------------ files

    def to_json(self) -> dict:
        doc = asdict(self)
        extra = doc.pop("extra")
        ordered = {
            "analysis": doc["analysis"],
            "schema_version": doc["schema_version"],
            "model": doc["model"],
            "settings": doc["settings"],
            "n_prompts": doc["n_prompts"],
            "n_tokens": doc["n_tokens"],
            "data": doc["data"],
        }
        ordered.update(extra)
        return to_jsonable(ordered)

    def save(self, target: str | Path, *, figures: bool = True) -> Path:
        """Write the result; returns the JSON file written.

        ``target`` ending in ``.json`` is that file. Anything else is a run directory: the result
        goes to ``target/results/<analysis>.json`` and, with ``figures``, its figures to
        ``target/figures/`` (PNG and PDF), so ``depthscope plot target`` can build the report.
        """
        target = Path(target)
        if target.suffix == ".json":
            atomic_write_json(target, self.to_json())
            return target
        run_dir = OutputFolder(target)
        run_dir.check()  # never into a folder depthscope did not write
        owner = self.identity()
        run_dir.claim(owner["fingerprint"], owner["name"], owner["source"])
        path = RunFolder(target).result(self.analysis)
        atomic_write_json(path, self.to_json())
        if figures:
            self._card("figures are defined").save_figures(self, RunFolder(target).figures)
        return path

    def identity(self) -> dict:
        """``{"name", "source", "fingerprint"}`` of the model (or a map's model pair) the result is
        of: what a folder holding it is claimed for (:meth:`OutputFolder.claim`)."""
        model = self.model if isinstance(self.model, dict) else {}
        if isinstance(model.get("source"), dict) and isinstance(model.get("target"), dict):
            return pair_identity(model["source"], model["target"])
        return {
            "name": str(model.get("name", "model")),
            "source": model.get("source"),
            "fingerprint": model.get("fingerprint") or _digest(model),
        }

    @classmethod
    def load(cls, path: str | Path) -> Result:
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise DepthscopeError(
                f"result file {path} does not exist; run `depthscope analyze` first"
            ) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            why = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
            raise DepthscopeError(
                f"result file {path} is not valid JSON ({why}); rerun the analysis"
            ) from None
        except IsADirectoryError:
            raise DepthscopeError(f"{path} is a directory, not a result file") from None
        known = {"analysis", "schema_version", "model", "settings", "n_prompts", "n_tokens", "data"}
        if not isinstance(doc, dict) or known - doc.keys():
            missing = sorted(known - doc.keys()) if isinstance(doc, dict) else sorted(known)
            raise DepthscopeError(
                f"result file {path} lacks {missing}; it was not written by depthscope"
            )
        if not isinstance(doc["schema_version"], int) or doc["schema_version"] > SCHEMA_VERSION:
            raise DepthscopeError(
                f"result file {path} has schema {doc['schema_version']}, newer than this depthscope "
                f"({SCHEMA_VERSION}); upgrade depthscope"
            )
        extra = {k: v for k, v in doc.items() if k not in known}
        return cls(**{k: doc[k] for k in known}, extra=extra)

    # ------------------------------------------------------------ reading it

    def card(self):
        """The analysis card that knows how to draw and summarise this result (None if unknown)."""
        return registered_card(self.analysis)

    def _card(self, what: str):
        card = self.card()
        if card is None:
            raise DepthscopeError(
                f"no {what} for analysis {self.analysis!r}: no installed analysis has that name "
                f"(an analysis plugin missing, or depthscope installed without its entry points: "
                f"reinstall it)"
            )
        return card

    def plot(self) -> dict:
        """Every figure of this result, ``{key: matplotlib Figure}`` (shown inline in notebooks)."""
        card = self._card("figures are defined")
        try:
            return card.draw(self)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise DepthscopeError(
                f"cannot draw {self.analysis}: its data is incomplete or malformed "
                f"({type(exc).__name__}: {exc}); rerun the analysis with this depthscope version"
            ) from exc

    def numbers(self) -> list[str]:
        """A few sentences with the numbers that summarise this result."""
        card = self.card()
        if card is None:
            return []
        try:
            return card.numbers(self)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return [f"(key numbers unavailable: {type(exc).__name__}: {exc})"]

    def tidy(self) -> Iterator[dict]:
        """Every number of ``data`` as one row: quantity, [prompt], layer, [layer2 | position], value.

        The second axis of a matrix is ``layer2`` for layer × layer maps and ``position`` for
        layer × token maps (the card says which). Strings (tokens) are left out.
        """
        card = self.card()
        second = getattr(card, "second_axis", "layer2") if card else "layer2"
        yield from _tidy(self.analysis, self.data, (), None, second)

    def to_pandas(self):
        """:meth:`tidy` as a pandas DataFrame (``pip install pandas``)."""
        try:
            import pandas as pd
        except ImportError:
            raise DepthscopeError(
                "to_pandas needs pandas; install it with `pip install pandas`"
            ) from None
        return pd.DataFrame(list(self.tidy()), columns=list(TIDY_COLUMNS))

    def _repr_html_(self) -> str:
        """The notebook view: the card's heading, key numbers and first figures."""
        card = self.card()
        if card is None:
            return f"<h3>{self.analysis}</h3><p>(no card for this analysis is installed)</p>"
        return card.html(self)


def run_identity(run_dir: str | Path, result: Result) -> dict:
    """The model a run folder holding ``result`` belongs to: the folder's owner (its marker or
    ``run.json``, :meth:`OutputFolder.owner`), else what the result names (:meth:`Result.identity`)."""
    owner = OutputFolder(run_dir).owner()
    if owner is not None and owner.get("fingerprint") is not None:
        return owner
    return result.identity()


def _digest(model: dict) -> str:
    """A stand-in fingerprint for results whose model identity carries none."""
    return hashlib.sha256(json.dumps(model, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _tidy(analysis: str, value: object, path: tuple, prompt: object, second: str) -> Iterator[dict]:
    """Rows for a JSON-like value at ``path`` (keys joined by "." give the quantity)."""
    value = to_jsonable(value)
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _tidy(analysis, sub, (*path, str(key)), prompt, second)
        return
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, entry in enumerate(value):  # per-prompt entries
            owner = entry.get("prompt", index)
            rest = {k: v for k, v in entry.items() if k != "prompt"}
            yield from _tidy(analysis, rest, path, owner, second)
        return
    yield from _numeric_rows(analysis, ".".join(path), value, prompt, second)


def _numeric_rows(
    analysis: str, quantity: str, value: object, prompt: object, second: str
) -> Iterator[dict]:
    def row(layer=None, other=None, number=None) -> dict:
        return {
            "analysis": analysis,
            "quantity": quantity,
            "prompt": prompt,
            "layer": layer,
            "layer2": other if second == "layer2" else None,
            "position": other if second == "position" else None,
            "value": float("nan") if number is None else float(number),
        }

    if _is_number(value):
        yield row(number=value)
    elif isinstance(value, list) and all(_is_number(v) for v in value):
        for layer, number in enumerate(value):
            yield row(layer, number=number)
    elif isinstance(value, list) and all(
        isinstance(r, list) and all(_is_number(v) for v in r) for r in value
    ):
        for layer, values in enumerate(value):
            for other, number in enumerate(values):
                yield row(layer, other, number)
    elif isinstance(value, list):  # lists of per-prompt matrices (e.g. erasure maps)
        for index, item in enumerate(value):
            if isinstance(item, list):
                yield from _numeric_rows(
                    analysis, quantity, item, index if prompt is None else prompt, second
                )


def _is_number(value: object) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))
