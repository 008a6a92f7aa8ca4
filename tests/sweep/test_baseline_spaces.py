"""The paper spaces carry every baseline of the paper's table with five configurations each,
and each configuration resolves to a valid run config (method settings under their names)."""

import pytest

from jola_ray.sweep.space import load_space, run_config_dict
from jola_ray.train import RunConfig

BASELINES = ("lora", "bitfit", "red", "repe", "loreft")


@pytest.mark.parametrize("name", ["commonsense", "mmlu_pro", "gem", "lofit"])
def test_every_baseline_has_five_configurations_that_resolve(name):
    space = load_space(name)
    wanted = BASELINES + (("iti",) if name == "lofit" else ())
    for method in wanted:
        configs = space.configs[method]
        assert len(configs) == 5 and len({c["name"] for c in configs}) == 5, method
    first = {}
    for trial in space.trials():
        if trial["method"] in wanted and trial["method"] not in first:
            first[trial["method"]] = RunConfig.from_dict(run_config_dict(trial))
    assert set(first) == set(wanted)
    assert first["loreft"].method_config.rank == 8  # r1: pyreft's commonsense recipe
    assert first["loreft"].lr == pytest.approx(9e-4)
    assert first["repe"].method_config.layers[0] == -5  # counted from the end
    if name == "lofit":
        assert (first["iti"].method_config.top_k, first["iti"].method_config.alpha) == (48, 15)
