"""BitFit, RED and LoReFT as plug-ins: identity at init, only their parameters train, exact
detach, exact save/load, and parameter counts against independent arithmetic (tiny models and
the real Llama-3.1-8B and Qwen2.5-7B configs on the meta device)."""

import pytest
import torch

from jola_ray.methods import registry
from jola_ray.methods.base import StageContext
from jola_ray.tiny import build_tiny, tiny_tokenizer

TRAINED = ("bitfit", "red", "loreft")


def _attach(model, name, **fields):
    method = registry.get(name)
    cfg, problems = method.build_config(fields)
    assert not problems, problems
    (stage,) = method.stages(cfg)
    return method, cfg, stage.attach(StageContext(model, cfg, 0, {}))


def _batch():
    tok = tiny_tokenizer()
    enc = tok(["Is the sky blue?", "ok"], return_tensors="pt", padding=True)
    return enc["input_ids"], enc["attention_mask"]


def _logits(model):
    ids, mask = _batch()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits


def _perturb(handle):
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in handle.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)


def _hooks(model):
    return [(n, len(m._forward_pre_hooks), len(m._forward_hooks)) for n, m in model.named_modules()]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma2", "phi3"])
@pytest.mark.parametrize("name", ["bitfit", "red"])
def test_identity_at_init(name, arch):
    model, _ = build_tiny(arch)
    ref = _logits(model)
    _, _, handle = _attach(model, name)
    assert torch.equal(_logits(model), ref)
    _perturb(handle)
    assert not torch.allclose(_logits(model), ref)  # the edit is live


@pytest.mark.parametrize("name", TRAINED)
def test_only_method_parameters_train(name):
    model, _ = build_tiny("qwen2")  # q/k/v have biases of their own: they must not move
    base = {id(p): (n, p.detach().clone()) for n, p in model.named_parameters()}
    _, _, handle = _attach(model, name)
    own = {id(p) for p in handle.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == own and own
    before = [p.detach().clone() for p in handle.parameters()]
    opt = torch.optim.AdamW(handle.parameters(), lr=1e-2)
    model.train()
    ids, mask = _batch()
    labels = ids.masked_fill(mask == 0, -100)
    labels[:, :3] = -100  # a prompt part, as SFT rows have
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, handle.parameters(), strict=True))
    for p in model.parameters():  # by identity: peft renames the layers it wraps
        if id(p) not in own:
            n, value = base[id(p)]
            assert torch.equal(p, value), n
            assert p.grad is None, n
    assert len(base) == sum(1 for p in model.parameters() if id(p) not in own)


@pytest.mark.parametrize("name", TRAINED)
def test_remove_restores_model_exactly(name):
    model, _ = build_tiny("mistral")
    model.model.embed_tokens.weight.requires_grad_(False)  # a mixed set of flags to restore
    modules = [(n, type(m)) for n, m in model.named_modules()]
    flags = [(n, p.requires_grad) for n, p in model.named_parameters()]
    hooks = _hooks(model)
    ref = _logits(model)
    _, _, handle = _attach(model, name)
    _perturb(handle)
    assert not torch.allclose(_logits(model), ref)
    with handle.disabled():
        assert torch.equal(_logits(model), ref)
    handle.remove()
    assert [(n, type(m)) for n, m in model.named_modules()] == modules
    assert [(n, p.requires_grad) for n, p in model.named_parameters()] == flags
    assert _hooks(model) == hooks
    assert torch.equal(_logits(model), ref)


@pytest.mark.parametrize("name", TRAINED)
def test_save_load_round_trip(name, tmp_path):
    model, _ = build_tiny("llama")
    method, _, handle = _attach(model, name, **({"layers": [1]} if name != "bitfit" else {}))
    _perturb(handle)
    edited = _logits(model)
    tensors = [p.detach().clone() for p in handle.parameters()]
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    loaded = registry.load_saved(model, path)  # as `jola-ray evaluate --edit` does
    assert loaded.method == name
    assert all(torch.equal(a, b) for a, b in zip(tensors, loaded.parameters(), strict=True))
    assert torch.equal(_logits(model), edited)
    loaded.remove()


@pytest.mark.parametrize("name", ["red", "loreft"])
def test_load_refuses_other_geometry(name, tmp_path):
    from jola_ray.editing import EditFileError

    model, _ = build_tiny("llama")
    method, _, handle = _attach(model, name)
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    other, _ = build_tiny("llama", hidden_size=64, num_attention_heads=8, num_key_value_heads=2)
    with pytest.raises(EditFileError, match="hidden_size: file 32, model 64"):
        method.load(other, path)
    assert "head_edit" not in other._modules


@pytest.mark.parametrize("name", TRAINED)
def test_load_refuses_another_base_model_of_the_same_shapes(name, tmp_path):
    """The file names the base model it was trained on (class and config fingerprint): the
    same shapes under another config (rope_theta) are refused, the same base loads."""
    from safetensors import safe_open

    from jola_ray.editing import EditFileError
    from jola_ray.editing.persist import base_fingerprint

    model, _ = build_tiny("llama")
    method, _, handle = _attach(model, name)
    path = handle.save(tmp_path / "edit.safetensors")
    handle.remove()
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert meta["architecture"] == type(model).__name__
    assert meta["base_fingerprint"] == base_fingerprint(model)
    other, _ = build_tiny("llama", rope_theta=1234.0)
    assert base_fingerprint(other) != base_fingerprint(model)
    before = [(n, type(m)) for n, m in other.named_modules()]
    with pytest.raises(EditFileError, match="trained on another base model.*fingerprint"):
        registry.load_saved(other, path)
    assert [(n, type(m)) for n, m in other.named_modules()] == before  # nothing left attached
    registry.load_saved(build_tiny("llama")[0], path).remove()  # the same base loads


def _tiny_expected(name, cfg_fields):
    """Independent arithmetic on the tiny geometry: hidden 32, intermediate 64, 2 layers,
    4 query heads of 8 over 2 KV heads."""
    h, inter, L, kv = 32, 64, 2, 2 * 8
    if name == "bitfit":
        return L * (h + kv + kv + h + inter + inter + h)  # q k v o gate up down
    if name == "red":
        return L * 2 * h
    r = cfg_fields.get("rank", 8)
    parts = 1 if cfg_fields.get("share_weights", True) else 2
    return L * parts * (2 * h * r + r)


@pytest.mark.parametrize(
    "name,fields",
    [("bitfit", {}), ("red", {}), ("loreft", {}), ("loreft", {"share_weights": False, "rank": 2})],
)
def test_count_equals_trainable_on_tiny(name, fields):
    model, _ = build_tiny("llama")
    method, cfg, handle = _attach(model, name, **fields)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == method.count(model, cfg) == _tiny_expected(name, fields)


# Real configs: the fields that set the geometry (from the models' config.json files).
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


def _real_expected(name, f):
    h, L, inter = f["hidden_size"], f["num_hidden_layers"], f["intermediate_size"]
    kv = f["num_key_value_heads"] * (h // f["num_attention_heads"])
    if name == "bitfit":
        return L * (h + 2 * kv + h + 2 * inter + h)
    if name == "red":
        return L * 2 * h
    return L * (2 * h * 8 + 8)  # LoReFT rank 8, shared, all layers


@pytest.mark.parametrize("model_name", sorted(REAL))
@pytest.mark.parametrize("name", TRAINED)
def test_count_real_configs_on_meta(model_name, name):
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    fields = REAL[model_name]
    config = (Qwen2Config if model_name.startswith("Qwen") else LlamaConfig)(**fields)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    method = registry.get(name)
    cfg, _ = method.build_config({})
    expected = _real_expected(name, fields)
    assert method.count(model, cfg) == expected
    known = {
        ("bitfit", "Llama-3.1-8B"): 1_376_256, ("bitfit", "Qwen2.5-7B"): 1_390_592,
        ("red", "Llama-3.1-8B"): 262_144, ("red", "Qwen2.5-7B"): 200_704,
        ("loreft", "Llama-3.1-8B"): 2_097_408, ("loreft", "Qwen2.5-7B"): 1_605_856,
    }  # fmt: skip
    assert expected == known[(name, model_name)]


@pytest.mark.parametrize("name", TRAINED)
def test_bf16_model_keeps_its_dtype_and_fp32_edit(name):
    """Edit tensors are fp32 whatever the model's dtype; the hooks hand back the model's dtype
    (BitFit and RED still exact at init)."""
    model, _ = build_tiny("llama", dtype=torch.bfloat16)
    ref = _logits(model)
    _, _, handle = _attach(model, name)
    out = _logits(model)
    assert out.dtype == torch.bfloat16
    if name != "loreft":
        assert torch.equal(out, ref)
    assert all(p.dtype == torch.float32 for p in handle.parameters())
