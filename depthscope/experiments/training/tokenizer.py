"""A character-level tokenizer with digits as single tokens, saved as a Hugging Face folder.

The paper's from-scratch models use a 512-piece SentencePiece vocabulary with ``split_digits``
(App. E). Ours is the character-level analogue: every printable ASCII character is a token, and a
space merges with the character after it (``" -10"`` -> ``" -"``, ``"1"``, ``"0"``), as
SentencePiece's word-initial pieces do, so an answer ``" {a}"`` tokenises the same alone and at the
end of ``"Q: {q} A: {a}"`` (the analyses rely on that). Digits are always single tokens. There is no
BOS (neither has the paper's vocabulary); ``<pad>`` and ``<eos>`` exist for batching, ``<unk>``
stands for characters outside printable ASCII.

``AutoTokenizer.from_pretrained(DIR)`` loads the saved folder offline with any recent
``transformers`` (it is a plain ``PreTrainedTokenizerFast``).
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ("<pad>", "<eos>", "<unk>")
CHARACTERS = tuple(c for c in string.printable if c not in " \t\r\x0b\x0c")  # incl. "\n"


def vocabulary() -> dict[str, int]:
    """Specials, a lone space, every character, then every space+character pair."""
    pieces = [*SPECIAL, " ", *CHARACTERS, *(" " + c for c in CHARACTERS if c != "\n")]
    return {piece: index for index, piece in enumerate(pieces)}


def char_tokenizer():
    """The tokenizer as a ``PreTrainedTokenizerFast`` (call ``save_pretrained(DIR)`` to store it)."""
    tok = Tokenizer(models.WordLevel(vocabulary(), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(" ?[^ ]| "), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
        model_max_length=4096,
    )
