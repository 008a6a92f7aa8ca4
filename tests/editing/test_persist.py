"""Saving an edit alone and re-applying it."""

import json

import pytest
import torch

from jola_ray.editing import (
    EditFileError,
    JoLAConfig,
    LoFiTConfig,
    apply_edit,
    load_edit,
    save_edit,
)


def _perturb(edit):
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for p in edit.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize(
    "config",
    [
        JoLAConfig(layers=[1], heads=[0, 3], penalty="reference", gate_lambda=0.5),
        JoLAConfig(parts="add"),
        LoFiTConfig(stage="bias", heads=[(1, 2), (0, 3)]),
        LoFiTConfig(stage="scale", l1_lambda=5e-4),
    ],
    ids=["jola-subset", "jola-add", "lofit-bias", "lofit-scale"],
)
def test_save_load_round_trip(build, batch, tmp_path, config):
    from safetensors import safe_open

    ids, mask = batch
    model, _ = build("llama")
    edit = apply_edit(model, config)
    _perturb(edit)
    logits = model(input_ids=ids, attention_mask=mask).logits
    path = save_edit(edit, tmp_path / "edit.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["method"] == config.method and meta["model_type"] == "llama"
    assert (meta["num_layers"], meta["num_heads"], meta["head_dim"]) == ("2", "4", "8")
    assert json.loads(meta["config"]) == config.to_dict()

    fresh, _ = build("llama")
    loaded = load_edit(fresh, path)
    assert type(loaded.config) is type(config) and loaded.config == config
    saved = edit.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    assert torch.equal(fresh(input_ids=ids, attention_mask=mask).logits, logits)
    assert all(p.requires_grad for p in loaded.parameters())


def test_load_rejects_other_geometry(build, tmp_path):
    model, _ = build("llama")
    path = save_edit(apply_edit(model, JoLAConfig()), tmp_path / "e.safetensors")
    other, _ = build("llama", num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=3)
    with pytest.raises(EditFileError) as err:
        load_edit(other, path)
    text = str(err.value)
    assert "num_layers: file 2, model 3" in text
    assert "num_heads: file 4, model 2" in text and "head_dim: file 8, model 16" in text
    assert not hasattr(other, "head_edit")


def test_load_rejects_non_edit_files(build, tmp_path):
    from safetensors.torch import save_file

    model, _ = build("llama")
    with pytest.raises(EditFileError, match="does not exist"):
        load_edit(model, tmp_path / "missing.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, str(plain))
    with pytest.raises(EditFileError, match="not a jola-ray edit file"):
        load_edit(model, plain)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(EditFileError, match="not a safetensors file"):
        load_edit(model, junk)


def test_load_refuses_an_edit_of_another_base_model(build, tmp_path):
    """tiny-llama and tiny-gemma2 share the head geometry; the edit knows which it came from."""
    from safetensors import safe_open

    from jola_ray.editing.persist import base_fingerprint

    llama, _ = build("llama")
    gemma, _ = build("gemma2")
    edit = apply_edit(llama, JoLAConfig())
    path = save_edit(edit, tmp_path / "e.safetensors")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == type(llama).__name__
    assert meta["base_fingerprint"] == base_fingerprint(llama) != base_fingerprint(gemma)
    with pytest.raises(EditFileError, match="trained on another base model.*architecture: file"):
        load_edit(gemma, path)
    assert not hasattr(gemma, "head_edit")
    # same class, a different config (another rope_theta): refused too
    other, _ = build("llama", rope_theta=1234.0)
    with pytest.raises(EditFileError, match="base config fingerprint: file"):
        load_edit(other, path)
    # the same base model built again loads; any_model=True skips the check
    again, _ = build("llama")
    load_edit(again, path)
    assert hasattr(load_edit(gemma, path, any_model=True), "config")
