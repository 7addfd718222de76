"""The architecture coverage table of docs/architectures.md, from benchmarks/arch_coverage.py's
JSON (kept as docs/reference/coverage.json): key ``coverage``, input ``--coverage JSON``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DOCS = Path(__file__).resolve().parent
COVERAGE_REFERENCE = DOCS / "reference" / "coverage.json"

# What a refusal says -> the kind of model it is (first match wins), for the summary by reason.
REASONS = (
    (
        "the load-time proof's logits check",
        "the head transforms the logits beyond norm and unembedding",
    ),
    ("the load-time proof's replay check", "a replayed layer does not reproduce its output"),
    (
        "no two children of a decoder layer add up",
        "no two children of a layer add up to its output",
    ),
    ("residual-shaped outputs", "no two children with residual-shaped outputs run once per layer"),
    ("hidden states of shape", "hidden states are not one row per prompt, one position per token"),
    ("no final norm", "no module reads the last layer's output"),
    ("decoder layers found", "no list of num_hidden_layers decoder layers"),
    ("ran in its forward pass", "some decoder layers do not run on text alone"),
    ("probe pass failed", "the probe pass fails"),
)


def take_coverage(path: Path) -> None:
    """The JSON of ``benchmarks/arch_coverage.py --out``."""
    if path.resolve() != COVERAGE_REFERENCE.resolve():
        shutil.copyfile(path, COVERAGE_REFERENCE)
    print(f"reference coverage: {path}")


def _why(entry: dict) -> str:
    text = entry.get("refusal") or entry.get("reason") or ""
    if text.startswith("unsupported architecture"):
        text = text.split("): ", 1)[-1].split("; depthscope's table has", 1)[0]
    return text.replace("|", "\\|")[:160]


def _reason(entry: dict) -> str:
    text = entry.get("refusal", "")
    return next((kind for key, kind in REASONS if key in text), "other")


def _adapter(entry: dict) -> str:
    a = entry["adapter"]
    block = "parallel" if a["parallel"] else "sequential"
    norm = f"`{a['final_norm']}`" if a["final_norm"] else "none"
    text = (
        f"`{a['layers']}`: `{a['attn_out']}` + `{a['mlp_out']}` ({block}, MLP reads "
        f"`{a['mlp_in']}`); final norm {norm}"
    )
    return text.replace("|", "\\|")  # alternatives (a|b) inside a table cell


def coverage_table() -> str:
    if not COVERAGE_REFERENCE.exists():
        return "coverage: no reference sweep kept yet (`python docs/make_findings.py --coverage FILE`).\n"
    doc = json.loads(COVERAGE_REFERENCE.read_text())
    s = doc["summary"]
    types = doc["types"]
    refused = [e for e in types if e.get("built") and e["status"] == "refused"]
    kinds: dict[str, list[str]] = {}
    for entry in refused:
        kinds.setdefault(_reason(entry), []).append(entry["model_type"])
    not_decoder = [e for e in types if not e.get("decoder_only")]
    out = [
        f"transformers {doc['transformers']} (torch {doc['torch']}) maps **{s['types']}** model "
        f"types to a causal LM; **{s['decoder_only']}** are decoder-only text stacks, of which "
        f"**{s['built']}** build offline as tiny random models ({doc['layers']} layers, hidden "
        f"{doc['shrunk']['hidden_size']}, the config's other defaults) and run their own forward "
        f"pass. Loaded through `LoadedModel.from_model`: **{s['proven']} proven** "
        f"({s['proven_fraction']:.0%} of those built; {s['proven_table']} by the table, "
        f"{s['proven_discovered']} by a discovered adapter), **{s['refused']} refused** in one "
        f"line, {s['crashed']} crashed.",
        "",
        "Refused, by what the refusal says:",
        "",
    ]
    for kind, names in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
        out.append(f"- {kind} ({len(names)}): {', '.join(f'`{n}`' for n in sorted(names))}")
    out += [
        "",
        "| model_type | class | result | adapter (layers: attention + MLP site) | identity error "
        "| refusal, or why not built |",
        "|---|---|---|---|---|---|",
    ]
    for entry in types:
        if not entry.get("decoder_only"):
            continue
        status = entry["status"]
        if status == "proven":
            result = f"proven ({entry['source']})"
            adapter, error = _adapter(entry), f"{entry['residual_identity']:.1g}"
            notes = ["copies sublayer outputs (in-place add)"] if entry["copies_sublayers"] else []
            if entry.get("packing") is False:
                notes.append("split points not packed")
            why = "; ".join(notes)
        else:
            result, adapter, error, why = status, "", "", _why(entry)
        out.append(
            f"| `{entry['model_type']}` | {entry['class']} | {result} | {adapter} | {error} "
            f"| {why} |"
        )
    out += [
        "",
        f"Not decoder-only ({len(not_decoder)}): "
        + ", ".join(f"`{e['model_type']}`" for e in not_decoder)
        + " (encoders run as decoders, decoder halves of encoder-decoders, speech/audio token "
        "decoders, XLNet).",
    ]
    return "\n".join(out) + "\n"
