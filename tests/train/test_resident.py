"""A worker's resident: the frozen model and data kept between trials, results unchanged,
the trial's memory released, a dirty or different model loaded again."""

import gc
import warnings

import pytest
import torch

from jola_ray.train import run
from jola_ray.train.resident import Resident

VOLATILE = ("cost_wall_s", "cost_peak_mem_gb", "cost_gpu_s", "s1_wall_s")


def _stable(metrics):
    return {k: v for k, v in metrics.items() if k not in VOLATILE}


def _tensor_bytes() -> int:
    """Bytes of every distinct tensor storage the garbage collector tracks (CPU), garbage not
    yet collected included: nothing is collected here, so the run must have released it."""
    seen, total = set(), 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # isinstance() on deprecated torch attributes warns
        objects = gc.get_objects()
        tensors = [o for o in objects if isinstance(o, torch.Tensor) and not o.is_meta]
    del objects
    for obj in tensors:
        storage = obj.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def _model_bytes(model) -> int:
    return sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()])


def test_trials_reuse_the_model_and_data_with_unchanged_results(tiny_cfg):
    resident = Resident()
    first = run(tiny_cfg("a", lr=1e-2), resident=resident)
    second = run(tiny_cfg("b", lr=5e-3), resident=resident)
    zero = run(tiny_cfg("z", method="zero_shot"), resident=resident)
    lofit = run(tiny_cfg("l", method="lofit", **{"lofit.top_k": 2}), resident=resident)
    lora = run(tiny_cfg("r", method="lora"), resident=resident)  # peft injects and removes
    assert resident.loads == 1 and resident.reuses == 4
    # a fresh model gives exactly the same results as the kept one
    assert _stable(run(tiny_cfg("b2", lr=5e-3))) == _stable(second)
    assert _stable(run(tiny_cfg("l2", method="lofit", **{"lofit.top_k": 2}))) == _stable(lofit)
    assert _stable(run(tiny_cfg("r2", method="lora"))) == _stable(lora)
    assert first["test_score"] >= 0 and zero["epoch"] == 0
    model = resident.model
    assert not hasattr(model, "head_edit") and "forward" not in model.__dict__


def test_a_finished_trial_leaves_only_the_model_in_memory(tiny_cfg):
    resident = Resident()
    run(tiny_cfg("warm"), resident=resident)  # first trial: lazy imports and caches settle
    after_first = _tensor_bytes()
    gc.disable()  # only the resident's own release may collect the trial's reference cycles
    try:
        run(tiny_cfg("again", lr=1e-2), resident=resident)
        after_second = _tensor_bytes()
    finally:
        gc.enable()
    model_bytes = _model_bytes(resident.model)
    # the trainer, optimizer, edit and batches are gone: what is left is the model (and the
    # evaluation's per-tokenizer token table, a few hundred bytes); measured without the
    # release: about 2.8 KB more on this tiny model (its edit and optimizer state)
    assert model_bytes <= after_second <= model_bytes + 1024
    assert after_second <= after_first


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_memory_returns_to_the_models_size(tiny_cfg):
    resident = Resident()
    run(tiny_cfg("g1", device="cuda"), resident=resident)
    base = torch.cuda.memory_allocated()
    run(tiny_cfg("g2", device="cuda", lr=1e-2), resident=resident)
    assert torch.cuda.memory_allocated() <= base
    assert base - _model_bytes(resident.model) < 1 << 20


def test_a_dirty_or_different_model_is_loaded_again(tiny_cfg):
    from jola_ray.editing import JoLAConfig, apply_edit
    from jola_ray.train.loading import load_model_and_tokenizer

    resident = Resident()
    cfg = tiny_cfg("x")
    model, _, _ = resident.base_model(cfg, load_model_and_tokenizer)
    apply_edit(model, JoLAConfig(seed=0))  # a trial that died with its edit attached
    again, _, _ = resident.base_model(cfg, load_model_and_tokenizer)
    assert resident.loads == 2 and again is not model and not hasattr(again, "head_edit")
    with torch.no_grad():
        next(again.parameters()).add_(1.0)  # weights changed behind the resident's back
    third, _, _ = resident.base_model(cfg, load_model_and_tokenizer)
    assert resident.loads == 3 and third is not again
    other, _, _ = resident.base_model(tiny_cfg("y", model="tiny-qwen2"), load_model_and_tokenizer)
    assert resident.loads == 4 and type(other).__name__.startswith("Qwen2")
    assert (
        resident.base_model(tiny_cfg("y", model="tiny-qwen2"), load_model_and_tokenizer)[0] is other
    )


def test_a_pack_uses_the_kept_model_and_leaves_it_clean(tiny_cfg, tmp_path):
    """A worker that ran a trial runs a pack of the same model without loading it again; the
    pack's results equal a pack on a freshly loaded model, its memory is released, and the
    next trial reuses the model."""
    from jola_ray.train.pack import run_pack

    resident = Resident()
    run(tiny_cfg("warm"), resident=resident)
    packed = [tiny_cfg(f"p{i}", lr=lr) for i, lr in enumerate((1e-2, 3e-2))]
    after_first = _tensor_bytes()
    gc.disable()  # only the resident's own release may collect the pack's reference cycles
    try:
        kept = run_pack(packed, pack_dir=tmp_path / "pk", resident=resident)
        after_pack = _tensor_bytes()
    finally:
        gc.enable()
    assert resident.loads == 1 and resident.reuses == 1
    assert _model_bytes(resident.model) <= after_pack <= after_first + 1024
    model = resident.model
    assert not hasattr(model, "head_edit") and "forward" not in model.__dict__
    fresh = run_pack(
        [tiny_cfg(f"f{i}", lr=lr) for i, lr in enumerate((1e-2, 3e-2))], pack_dir=tmp_path / "pf"
    )
    assert [_stable(m) for m in kept] == [_stable(m) for m in fresh]
    run(tiny_cfg("after"), resident=resident)
    assert resident.loads == 1 and resident.reuses == 2
