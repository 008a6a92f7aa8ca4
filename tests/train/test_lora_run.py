"""LoRA through the same protocol as JoLA: TRL training, edit-only checkpoints, exact resume."""

import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from jola_ray.train import run

LORA = {"method": "lora", "lora.r": 2, "lora.alpha": 4.0, "lr": 5e-2, "patience": 0}
VOLATILE = ("cost_wall_s", "cost_peak_mem_gb")


def test_lora_run_trains_only_the_adapter_and_writes_it(tiny_cfg, recorder):
    rec = recorder()
    cfg = tiny_cfg("lora", **LORA)
    metrics = run(cfg, report=rec)
    out = Path(cfg.output_dir)
    assert [c[0]["epoch"] for c in rec.calls] == [1, 2, 2]
    assert "train_lr" in rec.calls[0][0] and "lr" not in rec.calls[0][0]
    # the checkpoint holds only adapter tensors (kilobytes), never base weights
    ckpt = load_file(str(Path(rec.calls[0][1]) / "edit_params.safetensors"))
    assert ckpt and all(".lora_A." in k or ".lora_B." in k for k in ckpt)
    assert metrics["trainable_params"] == sum(v.numel() for v in ckpt.values())
    assert metrics["base_params"] > metrics["trainable_params"]
    saved = load_file(str(out / "edit.safetensors"))
    assert set(saved) == set(ckpt)
    assert any(v.abs().sum() > 0 for k, v in saved.items() if ".lora_B." in k)  # it trained
    resolved = metrics["resolved"]
    assert resolved["lora.r"] == 2 and resolved["lora.dropout"] == 0.05  # defaults written too
    assert json.loads(resolved["lora.target_modules"]) == [
        "q_proj",
        "k_proj",
        "v_proj",
        "up_proj",
        "down_proj",
    ]
    assert not any(k.startswith("jola.") for k in resolved)  # only the chosen method's
    assert json.loads((out / "metrics.json").read_text())["test_score"] == metrics["test_score"]


def test_lora_interrupted_run_resumes_to_the_uninterrupted_result(tiny_cfg, recorder):
    full = run(tiny_cfg("full", **LORA, epochs=3), report=recorder())
    cut = recorder(fail_after=1)
    try:
        run(tiny_cfg("cut", **LORA, epochs=3), report=cut)
    except RuntimeError as err:
        assert "simulated preemption" in str(err)
    resumed_cfg = tiny_cfg("resumed", **LORA, epochs=3)
    resumed = run(resumed_cfg, report=recorder(), resume_from=cut.calls[0][1])
    strip = lambda m: {k: v for k, v in m.items() if k not in VOLATILE}  # noqa: E731
    assert strip(resumed) == strip(full)
    a = load_file(str(Path(resumed_cfg.output_dir) / "edit.safetensors"))
    b = load_file(str(Path(tiny_cfg("full", **LORA).output_dir) / "edit.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_lora_trains_with_dpo_on_preference_tasks(tiny_cfg, recorder):
    """DPO's reference is the model with the adapter switched off (``disabled()``)."""
    import dataclasses
    import importlib.util

    from jola_ray.data import get_task

    spec = importlib.util.spec_from_file_location(
        "methods_tests", Path(__file__).with_name("test_methods.py")
    )
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    task = dataclasses.replace(get_task("truthfulqa"), name="tiny_tqa")
    rec = recorder()
    cfg = tiny_cfg("dpo", **{**LORA, "lr": 1e-3}, dpo_beta=0.5)
    metrics = run(cfg, report=rec, task=task, splits=helpers._preference_splits())
    assert {"dev_mc1", "dev_mc2", "test_mc1", "test_mc2"} <= set(metrics)
    # B = 0 at init: the policy starts exactly at the reference, so the dev DPO loss is near log 2
    assert abs(rec.calls[0][0]["dev_loss"] - torch.log(torch.tensor(2.0)).item()) < 0.05


def test_a_build_stage_is_evaluated_once_without_training(tiny_cfg, recorder, monkeypatch):
    """An inference-time method's recipe: one ``build`` stage computed from the training data."""
    from jola_ray.methods import registry
    from jola_ray.methods.base import Stage
    from jola_ray.methods.heads import HeadEditHandle

    seen = {}

    def build(ctx):
        from jola_ray.editing import JoLAConfig, apply_edit

        seen["train"] = len(ctx.train_examples)
        edit = apply_edit(ctx.model, JoLAConfig(seed=ctx.seed, init_std=0.5))
        edit.requires_grad_(False)  # fixed vectors: nothing trains
        return HeadEditHandle(edit)

    jola = registry.get("jola")
    built = dataclasses_replace(
        jola, name="built", stages=lambda cfg: (Stage("build", build, kind="build"),)
    )
    original = registry.get
    monkeypatch.setattr(registry, "get", lambda name: built if name == "jola" else original(name))
    rec = recorder()
    metrics = run(tiny_cfg("built"), report=rec)
    assert seen["train"] == 8 and len(rec.calls) == 1 and metrics["epoch"] == 0
    assert metrics["run_status"] == "finished" and "test_score" in metrics
    assert metrics["trainable_params"] == 144  # the built edit's size, though nothing trained
    out = Path(tiny_cfg("built").output_dir)
    assert (out / "edit.safetensors").is_file() and not (out / "checkpoints").exists()


def dataclasses_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
