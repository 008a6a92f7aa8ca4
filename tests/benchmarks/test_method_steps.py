"""The harness's ``methods`` section times every trained method, attached through the registry."""

from __future__ import annotations

import dataclasses

from benchmarks import method_steps
from benchmarks.shapes import build_model, get_shape
from jola_ray.methods import registry


def test_every_trained_method_is_timed_with_its_own_parameters():
    shape = dataclasses.replace(get_shape("tiny"), batch_size=2, seq_len=16)
    model, _ = build_model(shape, "cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    out = method_steps.run(model, shape, "cpu", warmup=0, steps=1)

    trained = []
    for method in registry.all_methods():
        cfg, _ = method.build_config({})
        if any(s.kind == "train" for s in method.stages(cfg)):
            trained.append(method.name)
    assert list(out["method_steps"]) == trained
    assert {"jola", "lora"} <= set(trained) and "zero_shot" not in trained
    assert out["methods_floor_ms"] > 0
    for name, res in out["method_steps"].items():
        assert "error" not in res, (name, res)
        assert res["ms"] > 0 and res["over_floor"] > 0
        method = registry.get(name)
        cfg, _ = method.build_config({})
        if len(method.stages(cfg)) == 1 and method.count is not None:
            count = method.count(model, cfg)
            count = count["trainable_params"] if isinstance(count, dict) else count
            assert res["trainable_params"] == count, name
    # every method was detached: the model is the base model again
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(after[k].equal(before[k]) for k in before)
