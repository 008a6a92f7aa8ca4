"""Search-space loading, validation and expansion (no Ray)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jola_ray.cli import main
from jola_ray.errors import ConfigError
from jola_ray.sweep.space import (
    SHIPPED_DIR,
    load_space,
    parse_space,
    resolved_max_t,
    run_config_dict,
    shipped_spaces,
)

REPO = Path(__file__).resolve().parents[2]

# name -> (tasks, seeds, models, trained methods, extra-axis product, configs, zero-shot?)
SHIPPED_GRIDS = {
    # the paper spaces: JoLA, LoFiT, LoRA, BitFit, RED, RepE, ReFT (+ ITI for LoFiT's tasks)
    "commonsense": (8, 3, 2, 7, 1, 5, True),
    "mmlu_pro": (14, 3, 2, 7, 1, 5, True),
    "gem": (4, 3, 2, 7, 1, 5, True),
    "lofit": (4, 3, 2, 8, 1, 5, True),
    "data_size": (3, 3, 1, 1, 5, 5, True),
    "model_size": (8, 3, 4, 1, 1, 5, True),
}


def small_space(**over) -> dict:
    raw = {
        "name": "t",
        "tasks": ["demo_vowel", "demo_parity"],
        "seeds": [1, 2],
        "models": ["tiny-llama"],
        "methods": ["jola", "zero_shot"],
        "configs": [{"name": "a", "lr": 0.01}, {"name": "b", "lr": 0.1}],
        "fixed": {"epochs": 3, "train_size": 8},
        "resources": {"cpu": 1, "gpu": 0},
    }
    raw.update(over)
    return raw


def test_shipped_spaces_are_all_present():
    assert {"demo", *SHIPPED_GRIDS} <= set(shipped_spaces())


@pytest.mark.parametrize("name", sorted(SHIPPED_GRIDS))
def test_shipped_space_validates_with_expected_grid(name):
    space = load_space(name)
    tasks, seeds, models, trained, extra, configs, zero = SHIPPED_GRIDS[name]
    expected = tasks * seeds * models * extra * (trained * configs + (1 if zero else 0))
    assert space.grid_size() == expected
    assert space.name == name
    header = (SHIPPED_DIR / f"{name}.yaml").read_text().splitlines()[0]
    assert header.startswith("#")
    assert f"jola-ray sweep {name}" in (SHIPPED_DIR / f"{name}.yaml").read_text()


def test_paper_spaces_cover_the_26_tasks_and_both_models():
    tasks = set()
    for name in ("commonsense", "mmlu_pro", "gem"):
        space = load_space(name)
        tasks |= set(space.tasks)
        assert set(space.models) == {
            "meta-llama/Llama-3.1-8B-Instruct",
            "Qwen/Qwen2.5-7B-Instruct",
        }
    assert len(tasks) == 26


def test_five_configs_span_lr_and_include_paper_and_reference_profiles():
    space = load_space("commonsense")
    configs = space.configs["jola"]
    assert len(configs) == 5
    lrs = [c["lr"] for c in configs]
    assert max(lrs) / min(lrs) >= 10
    as_tuples = {(c["lr"], c["lr_schedule"], c["profile"]) for c in configs}
    assert (5e-4, "exponential", "paper") in as_tuples
    assert (5e-3, "cosine", "reference-code") in as_tuples


def test_model_size_quantizes_only_the_70b():
    space = load_space("model_size")
    for trial in space.trials():
        quant = run_config_dict(trial).get("quantization", "none")
        assert (quant == "nf4") == trial["model"].endswith("70B-Instruct")


def test_data_size_has_train_size_axis_from_100_to_100k():
    space = load_space("data_size")
    sizes = space.axes["train_size"]
    assert min(sizes) == 100 and max(sizes) == 100_000
    seen = {t["train_size"] for t in space.trials()}
    assert seen == set(sizes)
    # train_size is part of the group: configs are compared only at the same size
    groups = {t["group"] for t in space.trials() if t["method"] == "jola"}
    assert len(groups) == 3 * 3 * 1 * len(sizes)


def test_trial_layout_matches_the_contract():
    space = parse_space(small_space(), "inline")
    trials = space.trials()
    assert len(trials) == 2 * 2 * 1 * (2 + 1)
    jola = [t for t in trials if t["method"] == "jola"]
    t = jola[0]
    assert set(t) == {"task", "seed", "model", "method", "hp", "fixed", "group"}
    assert t["hp"] == {"config_name": "a", "lr": 0.01}
    assert t["fixed"] == {"epochs": 3, "train_size": 8}
    assert t["group"] == "method=jola|model=tiny-llama|task=demo_vowel|seed=1"
    assert run_config_dict(t) == {
        "task": "demo_vowel",
        "seed": 1,
        "model": "tiny-llama",
        "method": "jola",
        "epochs": 3,
        "train_size": 8,
        "lr": 0.01,
    }
    zero = [t for t in trials if t["method"] == "zero_shot"]
    assert len(zero) == 2 * 2  # one per task x seed x model
    assert all(z["hp"] == {"config_name": "zero_shot"} for z in zero)
    # configs of one group differ in hp alone
    by_group = {}
    for tr in jola:
        by_group.setdefault(tr["group"], []).append(tr["hp"]["config_name"])
    assert all(names == ["a", "b"] for names in by_group.values())


def test_fractional_gpu_passes_memory_fraction_into_the_run_config():
    space = parse_space(small_space(resources={"cpu": 1, "gpu": 0.25}), "inline")
    assert all(run_config_dict(t)["gpu_memory_fraction"] == 0.25 for t in space.trials())
    whole = parse_space(small_space(resources={"cpu": 1, "gpu": 1}), "inline")
    assert all("gpu_memory_fraction" not in run_config_dict(t) for t in whole.trials())


def test_max_t_defaults_to_epochs_and_to_the_run_config_default():
    assert resolved_max_t(parse_space(small_space(), "inline")) == 3
    no_epochs = small_space(fixed={"train_size": 8})
    from jola_ray.train import RunConfig

    assert resolved_max_t(parse_space(no_epochs, "inline")) == RunConfig.from_dict({}).epochs


def test_every_error_is_reported_at_once(tmp_path):
    raw = small_space(
        tasks=["demo_vowel", "no_such_task"],
        seeds=[1, 1],
        metric=3,
        mode="maximum",
        scheduler={"grace_period": 0, "reduction_factor": 1.5, "max_t": 0},
        resources={"cpu": 0, "gpu": -1, "tpu": 2},
        configs=[{"name": "a", "lr": 0.01}, {"name": "a", "lrr": 0.1}],
        colour="blue",
    )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError) as info:
        load_space(path)
    msg = str(info.value)
    assert str(path) in msg
    for fragment in (
        "colour: unknown key",
        "seeds: duplicate values",
        "'no_such_task'",
        "metric: 3",
        "mode: 'maximum'",
        "scheduler.grace_period: 0",
        "scheduler.reduction_factor: 1.5",
        "scheduler.max_t: 0",
        "resources.cpu: 0",
        "resources.gpu: -1",
        "resources.tpu: unknown resource",
        "duplicate configuration name 'a'",
        "lrr: unknown field (did you mean lr?)",
    ):
        assert fragment in msg, fragment


def test_unknown_fixed_field_is_named_with_its_config(tmp_path):
    raw = small_space(fixed={"epochs": 3, "learning_rate": 0.1})
    with pytest.raises(ConfigError, match=r"config a: learning_rate: unknown field"):
        parse_space(raw, "inline")


def test_conflicting_keys_and_empty_axes():
    raw = small_space(
        seeds=[],
        axes={"train_size": [], "dev_size": [10, 10]},
        configs=[{"name": "a", "epochs": 4}],
    )
    with pytest.raises(ConfigError) as info:
        parse_space(raw, "inline")
    msg = str(info.value)
    assert "axes.train_size: must be a non-empty list" in msg
    assert "axes.dev_size: duplicate values" in msg
    assert "configs[0] (a).epochs: is also in fixed" in msg
    assert "seeds: must be a non-empty list" in msg


def test_configs_required_unless_only_zero_shot():
    with pytest.raises(ConfigError, match="configs: missing"):
        parse_space({k: v for k, v in small_space().items() if k != "configs"}, "inline")
    only_zero = small_space(methods=["zero_shot"])
    del only_zero["configs"]
    assert parse_space(only_zero, "inline").grid_size() == 4


def test_unknown_space_name_lists_shipped_ones():
    with pytest.raises(ConfigError, match="shipped: .*commonsense"):
        load_space("commonsens")


def test_fingerprint_is_stable_and_changes_with_the_grid():
    a = parse_space(small_space(), "inline").fingerprint()
    assert a == parse_space(small_space(), "other").fingerprint()
    assert a != parse_space(small_space(seeds=[1, 3]), "inline").fingerprint()
    changed = small_space(configs=[{"name": "a", "lr": 0.02}, {"name": "b", "lr": 0.1}])
    assert a != parse_space(changed, "inline").fingerprint()


def test_dry_run_prints_grid_and_exits_2_on_errors(tmp_path, capsys):
    assert main(["sweep", "commonsense", "--dry-run", "--storage-path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grid size: 1728 trials" in out  # 8 x 3 x 2 x (7 methods x 5 configs + zero-shot)
    assert "tasks   (8): arc_c" in out
    assert f"experiment directory: {tmp_path}/commonsense" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(small_space(mode="up")))
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    assert "mode: 'up' must be max or min" in capsys.readouterr().err


def test_dry_run_never_imports_ray():
    code = (
        "import sys; from jola_ray.cli import main; rc = main(['sweep', 'demo', '--dry-run']);"
        "print('RAY' if 'ray' in sys.modules else 'NORAY', rc)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert out.stdout.strip().splitlines()[-1] == "NORAY 0", out.stdout + out.stderr


def test_demo_space_is_small_and_on_demo_tasks():
    space = load_space("demo")
    assert all(t.startswith("demo_") for t in space.tasks)
    assert len(space.tasks) >= 2 and len(space.seeds) == 2
    assert set(space.methods) == {"jola", "lora", "bitfit", "red", "loreft", "zero_shot"}
    assert len(space.configs["jola"]) == 5
    assert len(space.configs["lora"]) == 2  # the demo's LoRA row
    # the trained baselines that learn a demo task at all, one configuration each
    assert all(len(space.configs[m]) == 1 for m in ("bitfit", "red", "loreft"))
    assert space.models == ("tiny-demo",)
    assert json.loads(json.dumps(space.trials()))  # plain data, JSON-able


def test_per_method_configs_name_only_their_methods_settings():
    raw = small_space(
        methods=["jola", "lora", "zero_shot"],
        configs={
            "jola": [{"name": "a", "lr": 0.01, "jola": {"temperature": 0.5}}],
            "lora": [{"name": "l1", "lora.r": 4}, {"name": "l2", "lora": {"r": 8}, "lr": 0.1}],
        },
        fixed={"epochs": 3, "jola.parts": "add", "lora.dropout": 0.0},
    )
    space = parse_space(raw, "inline")
    trials = space.trials()
    by_method = {}
    for t in trials:
        by_method.setdefault(t["method"], set()).add(t["hp"]["config_name"])
    assert by_method == {"jola": {"a"}, "lora": {"l1", "l2"}, "zero_shot": {"zero_shot"}}
    lora = next(t for t in trials if t["hp"]["config_name"] == "l2")
    assert lora["hp"] == {"config_name": "l2", "lora.r": 8, "lr": 0.1}
    assert lora["fixed"] == {"epochs": 3, "lora.dropout": 0.0}  # jola.parts is jola's only
    jola = run_config_dict(next(t for t in trials if t["method"] == "jola"))
    assert jola["jola.temperature"] == 0.5 and jola["jola.parts"] == "add"
    assert len(trials) == 2 * 2 * (1 + 2 + 1)


def test_per_method_config_errors_are_listed_at_once():
    raw = small_space(
        methods=["jola", "lora"],
        configs={
            "jola": [{"name": "a", "lora.r": 4}],
            "lofit": [{"name": "b"}],
        },
    )
    with pytest.raises(ConfigError) as info:
        parse_space(raw, "inline")
    msg = str(info.value)
    assert "configs.jola[0] (a).lora.r: is a setting of lora" in msg
    assert "configs.lofit: method 'lofit' is not in methods" in msg
    assert "no configurations for method 'lora'" in msg


def test_a_shared_list_may_not_name_one_methods_settings_when_several_train():
    raw = small_space(methods=["jola", "lora"], configs=[{"name": "a", "lora.r": 4}])
    with pytest.raises(ConfigError, match=r"configs \(for jola\)\[0\] \(a\).lora.r"):
        parse_space(raw, "inline")


def test_bad_method_settings_name_the_trial_config_and_field():
    raw = small_space(methods=["lora"], configs=[{"name": "l1", "lora.r": 0, "lora.dropuot": 0.1}])
    with pytest.raises(ConfigError) as info:
        parse_space(raw, "inline")
    msg = str(info.value)
    assert "config l1: lora.r: must be >= 1, got 0" in msg
    assert "lora.dropuot: unknown field (did you mean lora.dropout" in msg


@pytest.mark.slow
def test_the_wheel_ships_the_search_spaces(tmp_path):
    """`pip install` of the wheel, then `jola-ray sweep demo`, works outside a checkout."""
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "search_spaces").glob("*.yaml")}
    assert shipped and {f"jola_ray/search_spaces/{n}" for n in shipped} <= names
    assert "jola_ray/methods/registry.py" in names and "jola_ray/methods/catalog.py" in names
