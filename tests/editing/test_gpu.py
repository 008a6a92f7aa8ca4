"""On a CUDA device: the edit under bf16 SDPA and flash attention (skipped without a GPU)."""

import importlib.util

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit
from jola_ray.tiny import build_tiny

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def _edited_logits(attn: str, ids, mask):
    model, _ = build_tiny("llama", attn_implementation=attn, dtype=torch.bfloat16)
    model.to("cuda")
    edit = apply_edit(model, JoLAConfig(seed=0))
    with torch.no_grad():
        edit.mul_vector.normal_(0, 0.5)
        edit.add_vector.normal_(0, 0.5)
    assert edit.mul_vector.device.type == "cuda" and edit.mul_vector.dtype == torch.float32
    model.train()
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    assert edit.add_log_alpha.grad is not None
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is None, reason="flash_attn missing")
def test_flash_attention_matches_sdpa_bf16():
    ids = torch.randint(4, 90, (2, 24), device="cuda")
    mask = torch.ones_like(ids)
    sdpa = _edited_logits("sdpa", ids, mask)
    flash = _edited_logits("flash_attention_2", ids, mask)
    torch.testing.assert_close(flash, sdpa, rtol=0.05, atol=0.05)


def test_bf16_sdpa_on_cuda():
    ids = torch.randint(4, 90, (2, 24), device="cuda")
    logits = _edited_logits("sdpa", ids, torch.ones_like(ids))
    assert torch.isfinite(logits).all()
