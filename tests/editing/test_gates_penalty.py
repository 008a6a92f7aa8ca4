"""Hard-Concrete gates and the expected-L0 penalty, against hand computations."""

import math

import pytest
import torch

from jola_ray.editing import JoLAConfig, apply_edit
from jola_ray.editing.gates import eval_gates, open_probability, sample_gates
from jola_ray.errors import ConfigError


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-x))


def _p_open(la):
    # sigmoid(log_alpha - beta * log(-low / high)), beta = 0.33, (low, high) = (-0.1, 1.1)
    return _sigmoid(la - 0.33 * math.log(0.1 / 1.1))


def test_eval_gate_formula_and_exact_zeros():
    la = torch.tensor([-5.0, -math.log(11) - 1e-4, -1.0, 0.0, 1.0, math.log(11) + 1e-4, 5.0])
    expected = [min(1.0, max(0.0, 1.2 * _sigmoid(x) - 0.1)) for x in la.tolist()]
    torch.testing.assert_close(eval_gates(la), torch.tensor(expected))
    assert eval_gates(la)[:2].eq(0).all() and eval_gates(la)[-2:].eq(1).all()


def test_sampled_gates_open_with_closed_form_probability():
    torch.manual_seed(0)
    for la in (-1.0, 0.0, 0.8):
        g = sample_gates(torch.full((1,), la), (200_000, 1))
        assert ((g >= 0) & (g <= 1)).all()
        assert float((g > 0).float().mean()) == pytest.approx(_p_open(la), abs=0.005)
        # and it is a Hard-Concrete: some mass sits exactly at 0 and at 1
        assert (g == 0).any() and (g == 1).any()


def _set_log_alphas(edit, seed=5):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        edit.add_log_alpha.copy_(torch.randn(edit.add_log_alpha.shape, generator=gen) * 2)
        edit.mul_log_alpha.copy_(torch.randn(edit.mul_log_alpha.shape, generator=gen) * 2)
    return edit.add_log_alpha.detach().tolist(), edit.mul_log_alpha.detach().tolist()


def test_paper_penalty_by_hand(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(gate_lambda=0.25))
    add, mul = _set_log_alphas(edit)
    total = sum(_p_open(x) for row in add + mul for x in row)
    assert float(edit.penalty().detach()) == pytest.approx(0.25 * total, rel=1e-6)
    assert float(open_probability(torch.tensor(0.0))) == pytest.approx(_p_open(0.0))


def test_reference_penalty_by_hand(build):
    model, _ = build("llama")
    edit = apply_edit(model, JoLAConfig(penalty="reference"))
    add, mul = _set_log_alphas(edit)
    L, H, lam = 2, 4, 0.3
    p1 = sum(sum(_p_open(x) for x in row) / H for row in add)  # sum_l mean_h
    p2 = sum(sum(_p_open(x) for x in row) / H for row in mul)
    expected = lam * p1 / (L * H) + (1 - lam) * p2 / (L * H)
    assert float(edit.penalty(lambda_t=lam).detach()) == pytest.approx(expected, rel=1e-6)
    default = 0.1 * p1 / (L * H) + 0.9 * p2 / (L * H)
    assert float(edit.penalty().detach()) == pytest.approx(default, rel=1e-6)


def test_auto_lambda_matches_reference_gradient_on_additive_gates(build):
    model, _ = build("llama")
    paper = apply_edit(model, JoLAConfig(seed=0))
    assert paper.gate_lambda == pytest.approx(0.1 / (2 * 4**2))
    paper.penalty().backward()
    grad_paper = paper.add_log_alpha.grad.clone()
    paper.remove()
    reference = apply_edit(model, JoLAConfig(penalty="reference", seed=0))
    reference.penalty(lambda_t=0.1).backward()
    torch.testing.assert_close(grad_paper, reference.add_log_alpha.grad)


def test_jola_config_errors_listed_at_once(build):
    with pytest.raises(ConfigError) as err:
        JoLAConfig(gate_lambda="big", penalty="mine", parts="all", heads=[1, 1], temperature=0)
    text = str(err.value)
    for field in ("gate_lambda", "penalty", "parts", "heads", "temperature"):
        assert field in text
    model, _ = build("llama")
    with pytest.raises(ConfigError, match="layers"):
        apply_edit(model, JoLAConfig(layers=[0, 5]))
    assert JoLAConfig.from_dict(JoLAConfig(layers=[1]).to_dict()) == JoLAConfig(layers=(1,))
    with pytest.raises(ConfigError, match="unknown field"):
        JoLAConfig.from_dict({"lamda": 1})
