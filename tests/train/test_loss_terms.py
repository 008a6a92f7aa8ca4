"""The penalty term: added in training only, scaled for gradient accumulation per trainer kind."""

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from jola_ray.errors import TrainingError
from jola_ray.train.trainer import EditTrainerMixin


class _FakeParent:
    """Stands in for SFTTrainer/DPOTrainer: a fixed task loss."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return torch.tensor(inputs["task"])


def _trainer(loss_is_scaled_for_ga, ga=2, penalty=0.6):
    cls = type(
        "T", (EditTrainerMixin, _FakeParent), {"loss_is_scaled_for_ga": loss_is_scaled_for_ga}
    )
    t = cls()
    t.state = SimpleNamespace(global_step=7, epoch=1.5)
    t.current_gradient_accumulation_steps = ga
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t.seen_steps = []
    t.penalty_fn = lambda step: (t.seen_steps.append(step), torch.tensor(penalty))[1]
    return t


def test_sft_penalty_is_split_over_accumulated_micro_batches():
    t = _trainer(loss_is_scaled_for_ga=None, ga=2)
    model = torch.nn.Linear(1, 1).train()
    loss = t.compute_loss(model, {"task": 0.5}, num_items_in_batch=10)
    assert loss.item() == pytest.approx(0.5 + 0.6 / 2)
    assert t.seen_steps == [7]  # the gate schedule sees the optimizer step
    assert t._metrics["train"]["task_loss"] == [pytest.approx(1.0)]  # x GA: the step's token mean
    assert t._metrics["train"]["penalty"] == [pytest.approx(0.6)]


def test_dpo_penalty_is_added_whole_because_the_trainer_divides_by_ga():
    t = _trainer(loss_is_scaled_for_ga=False, ga=2)
    loss = t.compute_loss(torch.nn.Linear(1, 1).train(), {"task": 0.5}, num_items_in_batch=10)
    assert loss.item() == pytest.approx(0.5 + 0.6)


def test_dev_loss_is_the_task_loss_alone():
    t = _trainer(loss_is_scaled_for_ga=None)
    assert t.compute_loss(torch.nn.Linear(1, 1).eval(), {"task": 0.5}).item() == pytest.approx(0.5)
    assert not t._metrics["train"]


def test_non_finite_loss_names_the_step():
    t = _trainer(loss_is_scaled_for_ga=None, penalty=float("inf"))
    with pytest.raises(TrainingError, match="step 8"):
        t.compute_loss(torch.nn.Linear(1, 1).train(), {"task": 0.5}, num_items_in_batch=4)


def test_a_trainable_base_parameter_is_refused():
    from jola_ray.editing import JoLAConfig, apply_edit
    from jola_ray.tiny import build_tiny
    from jola_ray.train.pipeline import _check_trainable

    model, _ = build_tiny("llama")
    edit = apply_edit(model, JoLAConfig(seed=0))
    assert _check_trainable(model, edit) == 2 * (2 * 4 * 8 + 2 * 4)
    model.lm_head.weight.requires_grad_(True)
    with pytest.raises(TrainingError, match="lm_head"):
        _check_trainable(model, edit)
