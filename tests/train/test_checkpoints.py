"""A resume restores every part of the state it saved, or refuses naming the bad file."""

import os

import pytest

from jola_ray.errors import CheckpointError
from jola_ray.train import run
from jola_ray.train.state import check_checkpoint


@pytest.fixture
def epoch_one(tiny_cfg, recorder):
    """The checkpoint directory of epoch 1 of an interrupted 2-epoch run."""
    cut = recorder(fail_after=1)
    with pytest.raises(RuntimeError, match="simulated preemption"):
        run(tiny_cfg("cut", epochs=2, patience=0), report=cut)
    return cut.calls[0][1]


def test_a_checkpoint_without_optimizer_state_is_refused_naming_the_file(
    tiny_cfg, recorder, epoch_one
):
    os.remove(os.path.join(epoch_one, "optimizer.pt"))
    with pytest.raises(CheckpointError, match="optimizer.pt") as info:
        run(tiny_cfg("resumed", epochs=2, patience=0), report=recorder(), resume_from=epoch_one)
    assert info.value.path == os.path.join(epoch_one, "optimizer.pt")


@pytest.mark.parametrize(
    "name", ["edit_params.safetensors", "run_state.json", "rng_state.pth", "trainer_state.json"]
)
def test_a_corrupt_or_truncated_file_is_named(epoch_one, name):
    path = os.path.join(epoch_one, name)
    check_checkpoint(epoch_one)  # intact first
    with open(path, "rb") as fh:
        data = fh.read()
    # JSON cut off as by a full disk; binary files: random bytes of the same length
    corrupt = data[: len(data) // 2] if name.endswith(".json") else os.urandom(len(data))
    with open(path, "wb") as fh:
        fh.write(corrupt)
    with pytest.raises(CheckpointError, match=name) as info:
        check_checkpoint(epoch_one)
    assert info.value.path == path


def test_every_gate_closed_is_a_warning_in_the_results(tiny_cfg, recorder, caplog):
    """lr 1e30 shuts every gate: the run ends at the base model's score and says so."""
    rec = recorder()
    metrics = run(tiny_cfg("shut", epochs=1, lr=1e30, patience=0), report=rec)
    assert metrics["num_selected_heads"] == 0  # independently: no head is selected
    assert "every gate of the JoLA edit is closed" in metrics["warning"]
    assert rec.calls[-1][0]["warning"] == metrics["warning"]  # in the final result too
    assert any("every gate" in r.getMessage() for r in caplog.records)
    normal = run(tiny_cfg("normal", epochs=1, patience=0))
    assert normal["num_selected_heads"] > 0 and "warning" not in normal
