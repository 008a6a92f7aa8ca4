"""LoRA through peft: identity at init, only adapters train, exact detach, counts, save/load."""

import pytest
import torch

from jola_ray.methods import registry
from jola_ray.methods.base import StageContext
from jola_ray.tiny import build_tiny

LORA = registry.get("lora")


def _attach(model, **settings):
    cfg, problems = LORA.build_config(settings)
    assert not problems
    (stage,) = LORA.stages(cfg)
    return stage.attach(StageContext(model, cfg, seed=0, carry={})), cfg


@pytest.fixture(params=["llama", "qwen2"])
def tiny(request):
    model, _ = build_tiny(request.param, seed=0)
    model.eval()
    ids = torch.randint(
        0, model.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(1)
    )
    return model, ids


@pytest.mark.parametrize("use_dora", [False, True])
def test_logits_unchanged_at_init_and_after_remove(tiny, use_dora):
    """Also: the injected modules follow the model's eval mode (no dropout at evaluation)."""
    model, ids = tiny
    before = model(ids).logits
    state = {k: v.clone() for k, v in model.state_dict().items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    handle, _ = _attach(model, r=4, use_dora=use_dora)
    with torch.no_grad():
        after = model(ids).logits
    assert not any(m.training for m in model.modules())
    # B = 0 at init: LoRA is exactly the identity; DoRA rescales by |W| / |W| (float rounding)
    if use_dora:
        torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
    else:
        assert torch.equal(after, before)
    handle.remove()
    assert set(model.state_dict()) == set(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert not hasattr(model, "peft_config")
    assert torch.equal(model(ids).logits, before)


def test_only_lora_parameters_train(tiny):
    model, ids = tiny
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    handle, _ = _attach(model, r=4, dropout=0.0)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert {id(p) for p in handle.parameters()} == {
        id(p) for p in model.parameters() if p.requires_grad
    }
    model.train()
    opt = torch.optim.AdamW(handle.parameters(), lr=1e-2)
    loss = model(ids, labels=ids).loss
    loss.backward()
    opt.step()
    now = dict(model.named_parameters())
    # peft moved each base weight under ``base_layer``; compare by the base name
    for name, value in base.items():
        moved = name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        current = now.get(name, now.get(moved))
        assert current is not None, name
        assert torch.equal(current, value), f"base tensor {name} changed"
    assert any(p.abs().sum() > 0 for n, p in now.items() if ".lora_B." in n)  # B moved off 0
    handle.remove()


def _formula(h, layers, heads, kv, inter, r, dora=False):
    """``r * (in + out)`` per adapted projection (q, k, v, up, down), ``+ out`` for DoRA."""
    d = h // heads
    shapes = [(h, heads * d), (h, kv * d), (h, kv * d), (h, inter), (inter, h)]
    per_layer = sum(r * (i + o) + (o if dora else 0) for i, o in shapes)
    return layers * per_layer


REAL = {
    "Llama-3.1-8B": dict(
        hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
        intermediate_size=14336, vocab_size=128256,
    ),
    "Qwen2.5-7B": dict(
        hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
        intermediate_size=18944, vocab_size=152064,
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REAL))
@pytest.mark.parametrize("r,dora", [(32, False), (8, True)])
def test_count_matches_the_formula_on_real_configs_on_meta(name, r, dora):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    f = REAL[name]
    config = (Qwen2Config if name.startswith("Qwen") else LlamaConfig)(**f)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    cfg, _ = LORA.build_config({"r": r, "use_dora": dora})
    expected = _formula(
        f["hidden_size"], f["num_hidden_layers"], f["num_attention_heads"],
        f["num_key_value_heads"], f["intermediate_size"], r, dora,
    )  # fmt: skip
    assert LORA.count(model, cfg) == expected
    if name == "Llama-3.1-8B" and r == 32:
        assert expected == 32 * 32 * (4096 * 5 + 4096 + 1024 * 2 + 14336 * 2)  # 56.6M at r=32
    # what peft actually injects (on the meta device: no memory) agrees
    handle, _ = _attach(model, r=r, use_dora=dora)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == expected
    handle.remove()


def test_save_load_round_trips_exactly(tmp_path, tiny):
    model, ids = tiny
    handle, _ = _attach(model, r=4, use_dora=True)
    with torch.no_grad():
        for p in handle.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # a visible, non-trivial adapter
    edited = model(ids).logits
    saved = {n: p.detach().clone() for n, p in handle.named_tensors().items()}
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    assert not torch.equal(model(ids).logits, edited)

    again = registry.load_saved(model, path)  # the file names its method
    assert again.method == "lora" and again.config.use_dora and again.config.r == 4
    assert all(torch.equal(p, saved[n]) for n, p in again.named_tensors().items())
    assert torch.equal(model(ids).logits, edited)
    again.remove()


def test_load_refuses_an_adapter_of_another_shape(tmp_path):
    from jola_ray.editing import EditFileError

    model, _ = build_tiny("llama", seed=0)
    handle, _ = _attach(model, r=4)
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    other, _ = build_tiny("llama", seed=0, num_hidden_layers=3)
    with pytest.raises(EditFileError, match="does not fit"):
        registry.load_saved(other, path)
    assert not any(".lora_" in n for n, _ in other.named_parameters())


def test_load_refuses_an_adapter_of_another_base_model(tmp_path):
    """Same layer names and shapes, another base config (rope_theta): the file knows its base."""
    from safetensors import safe_open

    from jola_ray.editing import EditFileError
    from jola_ray.editing.persist import base_fingerprint

    model, _ = build_tiny("llama", seed=0)
    handle, _ = _attach(model, r=4)
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == type(model).__name__
    assert meta["base_fingerprint"] == base_fingerprint(model)
    other, _ = build_tiny("llama", seed=0, rope_theta=1234.0)
    assert base_fingerprint(other) != base_fingerprint(model)
    with pytest.raises(EditFileError, match="trained on another base model.*fingerprint"):
        registry.load_saved(other, path)
    assert not any(".lora_" in n for n, _ in other.named_parameters())
    from jola_ray.methods.lora import load

    load(other, path, any_model=True).remove()  # the override loads it
    registry.load_saved(model, path).remove()  # the base it was trained on loads


def test_missing_target_modules_name_the_model_type():
    from jola_ray.errors import UnsupportedModelError

    model, _ = build_tiny("llama", seed=0)
    with pytest.raises(UnsupportedModelError, match="'llama'.*no_such_proj"):
        _attach(model, target_modules=["no_such_proj"])


def test_settings_are_checked_with_every_problem_listed():
    cfg, problems = LORA.build_config({"r": 0, "dropout": 1.5, "bias": "some", "rr": 3})
    assert cfg is None
    text = "\n".join(problems)
    for fragment in (
        "lora.r: must be >= 1",
        "lora.dropout: must be",
        "lora.bias:",
        "lora.rr: unknown field (did you mean lora.r",
    ):
        assert fragment in text, fragment
