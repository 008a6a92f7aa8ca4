"""Tiny random models and an in-memory tokenizer, for tests, benchmarks and the demo.

Nothing here touches a model hub: the tokenizer is character-level and built in memory, and the
models are built from configs with random weights. Every config has fewer key/value heads than
query heads (grouped-query attention), like the real models the study uses.

A model spec string ``tiny-<arch>`` (for example ``tiny-llama``) names one of these models
wherever a hub id or a local path is accepted.
"""

from __future__ import annotations

import string

from jola_ray.errors import ConfigError

TINY_PREFIX = "tiny-"

_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
_CHARS = list(string.ascii_letters + string.digits + string.punctuation + " \n")

# Common geometry of every tiny model: 2 layers, 4 query heads over 2 KV heads, head_dim 8.
_BASE = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=0,
)


def tiny_tokenizer():
    """A character-level fast tokenizer over printable ASCII, BOS added, pad token ``<pad>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(_SPECIALS + _CHARS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def _vocab_size() -> int:
    return len(_SPECIALS) + len(_CHARS)


def _architectures():
    """arch name -> (config class, model class, extra config fields)."""
    import transformers as tf

    return {
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM, {}),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM, {}),
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM, {"sliding_window": None}),
        "gemma2": (tf.Gemma2Config, tf.Gemma2ForCausalLM, {"head_dim": 8}),
        "gemma3": (tf.Gemma3TextConfig, tf.Gemma3ForCausalLM, {"head_dim": 8}),
        "phi3": (tf.Phi3Config, tf.Phi3ForCausalLM, {"pad_token_id": 0}),
        "olmo2": (tf.Olmo2Config, tf.Olmo2ForCausalLM, {}),
        # The demo sweep's model: a tiny Llama with large random weights (init std 0.5). With
        # the default 0.02 the frozen random features are too weak for head edits to learn the
        # demo tasks (measured: chance level); with 0.5 they learn them (docs/data.md).
        "demo": (tf.LlamaConfig, tf.LlamaForCausalLM, {"initializer_range": 0.5}),
    }


TINY_ARCHS = ("llama", "qwen2", "mistral", "gemma2", "gemma3", "phi3", "olmo2")
# Every name accepted after "tiny-": the architectures plus named variants.
TINY_SPECS = (*TINY_ARCHS, "demo")


def tiny_config(arch: str = "llama", **overrides):
    """The config of a tiny random model of architecture ``arch`` (see ``TINY_ARCHS``)."""
    archs = _architectures()
    if arch not in archs:
        known = ", ".join(TINY_PREFIX + a for a in TINY_SPECS)
        raise ConfigError(f"model: unknown tiny model {TINY_PREFIX + arch!r}; known: {known}")
    config_cls, _, extra = archs[arch]
    fields = {**_BASE, "vocab_size": _vocab_size(), **extra, **overrides}
    return config_cls(**fields)


def build_tiny(
    arch: str = "llama",
    seed: int = 0,
    attn_implementation: str = "sdpa",
    dtype=None,
    **overrides,
):
    """Build ``(model, tokenizer)``: a tiny random model of ``arch`` (see ``TINY_SPECS``);
    ``dtype`` defaults to float32. (torch is imported here: the space's model check reads
    ``TINY_SPECS`` without it.)"""
    import torch

    dtype = dtype or torch.float32
    config = tiny_config(arch, **overrides)
    model_cls = _architectures()[arch][1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = model_cls._from_config(
                config, attn_implementation=attn_implementation, dtype=dtype
            )
        except ValueError:
            # Some architectures (Gemma 2) have no SDPA path: use the eager attention instead.
            if attn_implementation != "sdpa":
                raise
            torch.manual_seed(seed)
            model = model_cls._from_config(config, attn_implementation="eager", dtype=dtype)
    model.eval()
    return model, tiny_tokenizer()


def parse_tiny_spec(spec: str) -> str | None:
    """``"tiny-qwen2"`` -> ``"qwen2"``; any other spec -> None."""
    if spec.startswith(TINY_PREFIX):
        return spec[len(TINY_PREFIX) :]
    return None
