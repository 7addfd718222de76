"""Which token of the source model corresponds to which token of the target model.

Two models can only be compared at positions where both have read exactly the same text.
With the same vocabulary both tokenise identically, so positions pair one to one. With different
tokenizers a position is usable only where *both* tokenizations end a token at the same character
offset: there each model's residual at that token has consumed the same prefix of the text.
Special tokens (BOS, chat markers: empty offsets ``(k, k)``) never align, and position 0 of either
sequence is dropped, like the paper drops position 0 from its loss and metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from depthscope.core.errors import DepthscopeError

Offsets = Sequence[tuple[int, int]]


def same_vocabulary(a: object, b: object) -> bool:
    """True when both tokenizers map every token string to the same id (then they tokenise alike)."""
    if a is b:
        return True
    try:
        return a.get_vocab() == b.get_vocab()
    except AttributeError:
        return False


def token_ends(offsets: Offsets, special: Sequence[bool] | None = None) -> dict[int, int]:
    """``{character end: token index}`` for tokens that can take part in an alignment.

    Excluded: position 0, special tokens and empty spans. When several tokens end at the same
    character (byte-fallback pieces of one character share its span) the last one is kept: only it
    has read the whole prefix.
    """
    ends: dict[int, int] = {}
    for index, (start, end) in enumerate(offsets):
        if index == 0 or end <= start or (special is not None and special[index]):
            continue
        ends[int(end)] = index
    return ends


def align_offsets(
    source: Offsets,
    target: Offsets,
    source_special: Sequence[bool] | None = None,
    target_special: Sequence[bool] | None = None,
) -> tuple[list[int], list[int]]:
    """Token indices ``(source_positions, target_positions)`` that end at a shared character offset.

    Pairs come in text order; each token appears at most once.
    """
    src = token_ends(source, source_special)
    tgt = token_ends(target, target_special)
    shared = sorted(src.keys() & tgt.keys())
    return [src[e] for e in shared], [tgt[e] for e in shared]


@dataclass(frozen=True)
class AlignedText:
    """One text tokenised for both models, and the positions where their residuals are compared."""

    source_ids: list[int]
    target_ids: list[int]
    source_positions: list[int]
    target_positions: list[int]

    @property
    def n_aligned(self) -> int:
        return len(self.target_positions)

    def head(self, n: int) -> AlignedText:
        """The first ``n`` aligned positions only (the sequences themselves are kept)."""
        return AlignedText(
            self.source_ids, self.target_ids, self.source_positions[:n], self.target_positions[:n]
        )


def _special_ids(tokenizer: object) -> set[int]:
    ids = getattr(tokenizer, "all_special_ids", None) or []
    return {int(i) for i in ids}


class Aligner:
    """Tokenises texts for a (source, target) pair and finds the positions to compare.

    ``max_tokens`` caps each text at that many target tokens (and the source at the same text
    prefix); models are causal, so cutting a sequence never changes the residuals kept.
    """

    def __init__(self, source_tokenizer: object, target_tokenizer: object, max_tokens: int = 512):
        if source_tokenizer is None or target_tokenizer is None:
            raise DepthscopeError("both models need a tokenizer to map text to tokens")
        self.source = source_tokenizer
        self.target = target_tokenizer
        self.max_tokens = max_tokens
        self.same = same_vocabulary(source_tokenizer, target_tokenizer)
        if not self.same:
            for name, tok in (("source", source_tokenizer), ("target", target_tokenizer)):
                if not getattr(tok, "is_fast", False):
                    raise DepthscopeError(
                        f"the {name} model's tokenizer ({type(tok).__name__}) gives no character "
                        f"offsets, which aligning two different tokenizers needs; use a model with "
                        f"a fast (tokenizers-backed) tokenizer"
                    )

    @property
    def method(self) -> str:
        return "same-tokenizer" if self.same else "shared-character-ends"

    def __call__(self, text: str) -> AlignedText:
        return self._same(text) if self.same else self._different(text)

    def _same(self, text: str) -> AlignedText:
        ids = list(self.target(text, add_special_tokens=True)["input_ids"])[: self.max_tokens]
        special = _special_ids(self.target)
        positions = [t for t in range(1, len(ids)) if ids[t] not in special]
        return AlignedText(ids, ids, positions, positions)

    def _encode(self, tokenizer: object, text: str) -> tuple[list[int], list, list[bool]]:
        enc = tokenizer(
            text,
            add_special_tokens=True,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        return list(enc["input_ids"]), offsets, [bool(s) for s in enc["special_tokens_mask"]]

    def _different(self, text: str) -> AlignedText:
        tgt_ids, tgt_off, tgt_special = self._encode(self.target, text)
        src_ids, src_off, src_special = self._encode(self.source, text)
        tgt_ids, tgt_off, tgt_special = (
            v[: self.max_tokens] for v in (tgt_ids, tgt_off, tgt_special)
        )
        limit = max((end for _, end in tgt_off), default=0)
        keep = len(src_ids)
        while keep > 0 and src_off[keep - 1][1] > limit:
            keep -= 1
        src_ids, src_off, src_special = (v[:keep] for v in (src_ids, src_off, src_special))
        src_pos, tgt_pos = align_offsets(src_off, tgt_off, src_special, tgt_special)
        return AlignedText(src_ids, tgt_ids, src_pos, tgt_pos)
