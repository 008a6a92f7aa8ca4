"""Failures a user can act on: out of memory names batch size and model; 4-bit loading on GPU."""

import pytest
import torch

from jola_ray.errors import TrainingError


def test_out_of_memory_names_the_batch_size_and_model(tiny_cfg, monkeypatch):
    import jola_ray.train.pipeline as run_module

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run_module, "_recipe", oom)
    # importing the module rebinds the package's ``run``; it must stay callable
    from jola_ray.train import run

    with pytest.raises(TrainingError) as info:
        run(tiny_cfg("oom", batch_size=4, eval_batch_size=8))
    msg = str(info.value)
    assert "tiny-llama" in msg and "batch_size 4" in msg and "eval_batch_size 8" in msg
    assert "grad_accum_steps" in msg


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (bitsandbytes 4-bit)")
def test_nf4_base_trains_an_fp32_edit(tiny_cfg, tmp_path):
    from jola_ray.tiny import build_tiny

    model, tok = build_tiny("llama", seed=0)
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    cfg = tiny_cfg(
        "nf4",
        model=str(tmp_path / "tiny"),
        quantization="nf4",
        device="cuda",
        dtype="bf16",
        epochs=1,
    )
    from jola_ray.train import run

    metrics = run(cfg)
    assert metrics["run_status"] == "finished" and metrics["cost_gpu_s"] > 0
    assert metrics["trainable_params"] == 2 * (2 * 4 * 8 + 2 * 4)
