"""Learning-rate and gate-weight schedules against their formulas."""

import math

import pytest
import torch

from jola_ray.methods.jola import gate_weight
from jola_ray.train.schedules import LRSchedule


def test_exponential_after_one_warmup_epoch():
    s = LRSchedule("exponential", steps_per_epoch=10, total_steps=50, warmup_epochs=1.0)
    assert [s(i) for i in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert s(9) == pytest.approx(1.0)
    # t counts epochs after warm-up: step 10 is t=0, step 25 is t=1.5
    assert s(10) == pytest.approx(1.0)
    assert s(25) == pytest.approx(0.1**1.5 * math.exp(-0.01 * 1.5))


def test_cosine_with_50_warmup_steps_linear_and_constant():
    s = LRSchedule("cosine", steps_per_epoch=25, total_steps=500, warmup_steps=50)
    assert s(49) == pytest.approx(1.0)
    assert s(50 + 225) == pytest.approx(0.5)  # halfway through the 450 decay steps
    assert s(499) == pytest.approx(0.5 * (1 + math.cos(math.pi * 449 / 450)))
    lin = LRSchedule("linear", steps_per_epoch=4, total_steps=20)
    assert lin(5) == pytest.approx(0.75)
    assert LRSchedule("constant", steps_per_epoch=4, total_steps=20)(17) == 1.0


def test_cyclic_triangle():
    s = LRSchedule(
        "cyclic", steps_per_epoch=10, total_steps=100, cycle_epochs=2, cycle_min_ratio=0.2
    )
    assert s(0) == pytest.approx(1.0)
    assert s(10) == pytest.approx(0.2)  # half a period (1 epoch) in: the bottom
    assert s(5) == pytest.approx(0.6)
    assert s(20) == pytest.approx(1.0)


def test_adaptive_cuts_on_stalled_dev_loss_and_its_state_survives_the_scheduler_checkpoint():
    s = LRSchedule("adaptive", steps_per_epoch=4, total_steps=40, adaptive_factor=0.5)
    assert not s.on_dev_loss(2.0)
    assert not s.on_dev_loss(1.5)
    assert s.on_dev_loss(1.7)  # no gain: cut
    assert s(30) == pytest.approx(0.5)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, s)
    fresh = LRSchedule("adaptive", steps_per_epoch=4, total_steps=40, adaptive_factor=0.5)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt, fresh)
    sched2.load_state_dict(sched.state_dict())
    assert fresh.scale == 0.5 and fresh.best_dev_loss == 1.5


def test_gate_weight_schedules():
    assert gate_weight("fixed", 100, 200) == 0.1
    assert gate_weight("expon", 50, 200) == pytest.approx(0.1 * math.exp(-0.5))
    assert gate_weight("linear", 50, 200) == pytest.approx(0.05)
    assert gate_weight("cyclic", 5, 200) == pytest.approx(1.0)
    assert gate_weight("cyclic", 15, 200) == pytest.approx(0.0, abs=1e-12)


def test_reference_code_guard_and_cyclic_start():
    """The reference code skips the penalty where lambda_t is 0 and starts cyclic at 0.1; the
    reference-code profile does both, the paper profile follows the formula."""
    import torch

    from jola_ray.methods.jola import reference_penalty
    from jola_ray.train.config import profile_defaults

    assert gate_weight("cyclic", 0, 200) == pytest.approx(0.5)
    assert gate_weight("cyclic", 0, 200, cyclic_start=0.1) == 0.1
    assert gate_weight("cyclic", 5, 200, cyclic_start=0.1) == pytest.approx(1.0)

    def penalty(lam):  # P_add = 2, P_mul = 3: lambda * 2 + (1 - lambda) * 3
        return torch.tensor(lam * 2.0 + (1 - lam) * 3.0)

    formula = reference_penalty(penalty, "linear", 100)
    guarded = reference_penalty(penalty, "linear", 100, skip_at_zero=True)
    assert float(formula(0)) == 3.0 and float(guarded(0)) == 0.0
    assert float(guarded(50)) == pytest.approx(0.1 * 2 + 0.9 * 3)
    cyclic = reference_penalty(penalty, "cyclic", 100, cyclic_start=0.1, skip_at_zero=True)
    assert float(cyclic(0)) == pytest.approx(0.1 * 2 + 0.9 * 3)
    assert float(cyclic(15)) == 0.0 and float(cyclic(35)) == 0.0
    ref, paper = profile_defaults("reference-code"), profile_defaults("paper")
    assert (ref["jola.gate_cyclic_start"], ref["jola.gate_skip_at_zero"]) == (0.1, True)
    assert (paper["jola.gate_cyclic_start"], paper["jola.gate_skip_at_zero"]) == (None, False)


def test_jola_method_applies_the_guard_and_cyclic_start_from_its_settings():
    """The JoLA method's penalty reads ``jola.gate_skip_at_zero`` / ``jola.gate_cyclic_start``:
    the handle's penalty equals the edit's own reference penalty at the weight they give."""
    from jola_ray.methods import registry
    from jola_ray.methods.base import StageContext
    from jola_ray.tiny import build_tiny

    jola = registry.get("jola")

    def value(t) -> float:
        return float(t.detach())

    def handle(**settings):
        model, _ = build_tiny("llama", seed=0)
        cfg, problems = jola.build_config({"penalty": "reference", **settings})
        assert not problems
        (stage,) = jola.stages(cfg)
        return stage.attach(StageContext(model, cfg, seed=0, carry={}))

    plain = handle(gate_schedule="linear")
    assert value(plain.penalty(0, 100)) == pytest.approx(value(plain.edit.penalty(0.0)))
    assert value(plain.penalty(0, 100)) > 0  # the formula's (1 - 0) * P_mul term
    guarded = handle(gate_schedule="linear", gate_skip_at_zero=True)
    assert value(guarded.penalty(0, 100)) == 0.0
    assert value(guarded.penalty(50, 100)) == pytest.approx(value(guarded.edit.penalty(0.1)))
    cyclic = handle(gate_schedule="cyclic", gate_cyclic_start=0.1)
    assert value(cyclic.penalty(0, 100)) == pytest.approx(value(cyclic.edit.penalty(0.1)))
    _, problems = jola.build_config({"gate_cyclic_start": 2})
    assert problems and "jola.gate_cyclic_start" in problems[0]
