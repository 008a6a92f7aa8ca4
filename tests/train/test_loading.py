"""Model loading: local paths, a tokenizer without a pad token, a model that does not exist."""

import pytest

from jola_ray.errors import ConfigError


def test_missing_pad_token_pads_with_eos_without_resizing(tiny_cfg, tmp_path):
    from jola_ray.tiny import build_tiny
    from jola_ray.train.loading import load_model_and_tokenizer

    model, tok = build_tiny("qwen2", seed=0)
    vocab = model.get_input_embeddings().weight.shape[0]
    tok.pad_token = None
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    loaded, tok2, device = load_model_and_tokenizer(tiny_cfg(model=str(tmp_path / "m")))
    assert tok2.pad_token == tok2.eos_token == "</s>"
    assert loaded.config.pad_token_id == tok2.eos_token_id
    assert loaded.get_input_embeddings().weight.shape[0] == vocab
    assert device.type == "cpu" and not loaded.training


def test_a_model_that_cannot_be_found_is_a_config_error(tiny_cfg, tmp_path):
    from jola_ray.train.loading import load_model_and_tokenizer

    with pytest.raises(ConfigError, match="cannot load"):
        load_model_and_tokenizer(tiny_cfg(model=str(tmp_path / "nowhere")))
    with pytest.raises(ConfigError, match="unknown tiny model"):
        load_model_and_tokenizer(tiny_cfg(model="tiny-gpt5"))


def test_a_4bit_run_without_bitsandbytes_names_the_extra(tiny_cfg, tmp_path, monkeypatch):
    """bitsandbytes is the optional ``quant`` extra: a 4-bit run without it says how to get it
    (before anything loads)."""
    import importlib.util

    from jola_ray.train.loading import load_model_and_tokenizer

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real(name, *a),
    )
    cfg = tiny_cfg(model=str(tmp_path / "some-model"), quantization="nf4", device="auto")
    with pytest.raises(ConfigError, match=r"needs bitsandbytes.*pip install 'jola-ray\[quant\]'"):
        load_model_and_tokenizer(cfg)
