"""The shipped analysis spaces: each validates (as ``--dry-run`` does), states its trial count,
what it reproduces and its run and report commands, and sweeps the setting whose report section
it is meant for (``analysis.studies`` recognises the section from that setting)."""

from __future__ import annotations

import re

import pytest

from analysis.studies import study_of
from jola_ray import cli
from jola_ray.sweep.space import SHIPPED_DIR, load_space

# space -> (the setting it varies, or None; the report section that setting gives)
ANALYSES = {
    "component_study": ("jola.site", "component_study"),
    "gate_ablation": ("jola.gates", "gate_ablation"),
    "parts_ablation": ("jola.parts", "parts_ablation"),
    "schedules": ("lr_schedule", "schedules"),
    "gate_dynamics": (None, None),  # every JoLA sweep records the gate statistics
    "data_size": ("train_size", "data_size"),
    "model_size": ("models", "model_size"),
    "head_count": ("lofit.top_k", "head_count"),
}


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_analysis_space_header_states_its_trials_and_commands(name):
    text = (SHIPPED_DIR / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    space = load_space(name)  # every error at once, the same check as --dry-run
    [count] = re.findall(r"= ([\d,]+) trials", header)
    assert space.grid_size() == int(count.replace(",", "")) == len(space.trials())
    for needed in (
        f"jola-ray sweep {name}",
        f"jola-ray report /shared/ray_results/{name}",
        "Reproduces:",
        "--dry-run",
    ):
        assert needed in header, needed
    axis, section = ANALYSES[name]
    if axis == "models":
        assert len(space.models) > 1
    elif axis is not None:
        assert list(space.axes) == [axis] and len(space.axes[axis]) > 1
        assert study_of(axis).slug == section


@pytest.mark.parametrize("name", ["gate_ablation", "component_study", "schedules"])
def test_dry_run_prints_the_stated_grid(name, capsys):
    assert cli.main(["sweep", name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"grid size: {load_space(name).grid_size()} trials" in out


def test_the_issue_list_data_and_model_size():
    """Data size 100 .. 100k examples; model size 1B, 3B, 8B and 70B, the 70B in 4-bit."""
    sizes = load_space("data_size").axes["train_size"]
    assert min(sizes) == 100 and max(sizes) == 100_000
    space = load_space("model_size")
    assert [re.search(r"(\d+)B", m).group(1) for m in space.models] == ["1", "3", "8", "70"]
    [big] = [m for m in space.models if "70B" in m]
    assert space.model_overrides[big]["quantization"] == "nf4"
