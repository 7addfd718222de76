"""Tiny randomly initialised models of every supported family, built from configs (no download).

Weights are drawn with a large initializer range so that every layer changes the residual stream
noticeably; otherwise interventions would produce near-zero effects and comparisons would be weak.
"""

from __future__ import annotations

import torch
import transformers as tf

from depthscope.models.adapters import BoundAdapter
from depthscope.models.loading.loader import LoadedModel

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB, initializer_range=0.2, bos_token_id=1, eos_token_id=2, pad_token_id=0
)
SAVED_CONTEXT = 512  # positions of the saved tiny model (tiny_model_dir)
LLAMA_LIKE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
)


def _configs() -> dict:
    return {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, dict(**LLAMA_LIKE, num_hidden_layers=4)),
        "mistral": (
            tf.MistralConfig,
            tf.MistralForCausalLM,
            dict(**LLAMA_LIKE, num_hidden_layers=3),
        ),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, dict(**LLAMA_LIKE, num_hidden_layers=3)),
        "qwen3": (
            tf.Qwen3Config,
            tf.Qwen3ForCausalLM,
            dict(**LLAMA_LIKE, head_dim=8, num_hidden_layers=3),
        ),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, dict(**LLAMA_LIKE, num_hidden_layers=3)),
        "gemma": (
            tf.GemmaConfig,
            tf.GemmaForCausalLM,
            dict(**LLAMA_LIKE, head_dim=8, num_hidden_layers=3),
        ),
        "gemma2": (
            tf.Gemma2Config,
            tf.Gemma2ForCausalLM,
            dict(
                **LLAMA_LIKE,
                head_dim=8,
                num_hidden_layers=3,
                sliding_window=4,
                final_logit_softcapping=5.0,
            ),
        ),
        "gemma3": (
            tf.Gemma3TextConfig,
            tf.Gemma3ForCausalLM,
            dict(
                **LLAMA_LIKE,
                head_dim=8,
                num_hidden_layers=4,
                sliding_window=4,
                sliding_window_pattern=2,
            ),
        ),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, dict(**LLAMA_LIKE, num_hidden_layers=3)),
        "gpt2": (
            tf.GPT2Config,
            tf.GPT2LMHeadModel,
            dict(n_embd=32, n_layer=3, n_head=4, n_positions=128),
        ),
        "gpt_neox": (
            tf.GPTNeoXConfig,
            tf.GPTNeoXForCausalLM,
            dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=3),
        ),
        "gpt_neox_sequential": (
            tf.GPTNeoXConfig,
            tf.GPTNeoXForCausalLM,
            dict(
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=3,
                use_parallel_residual=False,
            ),
        ),
        "phi": (
            tf.PhiConfig,
            tf.PhiForCausalLM,
            dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_hidden_layers=3),
        ),
        "gptj": (
            tf.GPTJConfig,
            tf.GPTJForCausalLM,
            dict(n_embd=32, n_layer=3, n_head=4, rotary_dim=4, n_positions=128),
        ),
    }


FAMILIES = tuple(_configs())


def build_tiny(config_cls, model_cls, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A tiny random fp32 CPU model of ``model_cls`` from ``config_cls(**COMMON, **kwargs)``
    (``kwargs`` win), seeded, in eval mode, frozen, with non-trivial norm gains; not wrapped."""
    config = config_cls(**{**COMMON, **kwargs})
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    model.requires_grad_(False)
    with torch.no_grad():  # make norms' gains non-trivial too
        for name, param in model.named_parameters():
            if "norm" in name or "ln" in name:
                param.add_(0.3 * torch.randn_like(param))
    return model


def tiny_model(family: str, seed: int = 0, tokenizer=None) -> LoadedModel:
    """A tiny random fp32 CPU model of ``family`` wrapped like a loaded model (with ``tokenizer``,
    its vocabulary is the tokenizer's)."""
    config_cls, model_cls, kwargs = _configs()[family]
    vocab = {"vocab_size": len(tokenizer)} if tokenizer is not None else {}
    model = build_tiny(config_cls, model_cls, seed, **vocab, **kwargs)
    adapter = BoundAdapter(model)
    return LoadedModel(
        model=model, tokenizer=tokenizer, adapter=adapter, identity={"name": f"tiny-{family}"}
    )


def tiny_falcon() -> torch.nn.Module:
    """A tiny random Falcon with parallel blocks (not in the table; its layer adds
    ``mlp_output += attention_output`` in place), norms as initialised."""
    config = tf.FalconConfig(
        **COMMON,
        hidden_size=32,
        num_attention_heads=4,
        num_hidden_layers=3,
        parallel_attn=True,
        new_decoder_architecture=False,
    )
    torch.manual_seed(0)
    return tf.FalconForCausalLM(config).eval().requires_grad_(False)


def tiny_gemma3_multimodal(tokenizer) -> torch.nn.Module:
    """A tiny random Gemma 3 image-text wrapper (``Gemma3ForConditionalGeneration``: no
    ``config.hidden_size``, its language model under ``model.language_model``)."""
    config = tf.Gemma3Config(
        text_config=dict(
            **LLAMA_LIKE,
            vocab_size=len(tokenizer),
            head_dim=8,
            num_hidden_layers=2,
            sliding_window=4,
            initializer_range=0.2,
        ),
        vision_config=dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
        mm_tokens_per_image=4,
    )
    torch.manual_seed(0)
    return tf.Gemma3ForConditionalGeneration(config).eval()


def random_ids(lengths: list[int], seed: int = 1) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (n,), generator=gen).tolist() for n in lengths]


CORPUS = [
    "Problem: Sara has 12 apples. She buys 7 more. How many apples does she have now?",
    "Solution: 12 + 7 = 19. The final answer is 19",
    "The neighbour of Brelo is Quist. 5 + 7 + 5 + 3 = 20. (3 + 4) - 2 = 5.",
    "Exceptions are raised when an error is detected; handlers catch them.",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained on a few sentences (adds a BOS token, like Llama 3)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"], show_progress=False
    )
    tok.train_from_iterator(CORPUS * 5, trainer)
    bos = tok.token_to_id("<bos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def save_tiny_model_dir(folder) -> object:
    """Save a tiny random Llama whose vocabulary matches :func:`tiny_tokenizer` into ``folder``."""
    return save_llama_dir(folder, n_layers=3, seed=0, initializer_range=0.2)


def save_llama_dir(
    folder, n_layers: int, seed: int = 0, initializer_range: float | None = None
) -> object:
    """A random Llama of ``n_layers`` with :func:`tiny_tokenizer`, saved into ``folder``, with
    positions enough for the default mixture's prose (up to ~230 tokens with this tokenizer)."""
    tokenizer = tiny_tokenizer()
    extra = {} if initializer_range is None else {"initializer_range": initializer_range}
    config = tf.LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        num_hidden_layers=n_layers,
        **{**LLAMA_LIKE, "max_position_embeddings": SAVED_CONTEXT},
        **extra,
    )
    torch.manual_seed(seed)
    tf.LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def bpe_tokenizer(space_digit_merges: bool):
    """A byte-level BPE tokenizer built from its vocabulary and merges (no training).

    With ``space_digit_merges`` it merges the space into the number as GPT-2 does (``" 28"`` is the
    one token ``"Ġ28"``); without, the space stays a token of its own, as for Llama 3, Qwen and
    both built-in models (``"Ġ", "2", "8"``).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = [("Ġ", "2"), ("Ġ2", "8")] if space_digit_merges else []
    merges += [("Y", "o"), ("Yo", "k"), ("a", "b")]
    vocab = {token: i for i, token in enumerate(specials + alphabet)}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
