"""RunConfig: profiles, flat/nested/YAML round trips, every bad field listed at once, CLI flags."""

import argparse

import pytest
import yaml

from jola_ray.errors import ConfigError
from jola_ray.train import RunConfig, leaf_fields, profile_defaults


def test_paper_defaults_are_the_papers_statements():
    cfg = RunConfig.from_dict({})
    assert (cfg.lr, cfg.lr_schedule, cfg.warmup_epochs) == (5e-4, "exponential", 1.0)
    assert (cfg.lr_decay_lambda, cfg.lr_decay_rate, cfg.adam_epsilon) == (0.1, 0.01, 1e-6)
    assert (cfg.jola.temperature, cfg.dtype, cfg.patience, cfg.max_length) == (
        0.33,
        "fp32",
        2,
        None,
    )
    assert (cfg.train_size, cfg.seed, cfg.select_metric) == (200, 42, "dev_score")


def test_reference_code_profile_and_overrides():
    cfg = RunConfig.from_dict({"profile": "reference-code", "lr": 1e-3})
    assert cfg.lr == 1e-3  # an explicit value beats the profile
    assert (cfg.lr_schedule, cfg.warmup_steps, cfg.warmup_epochs) == ("cosine", 50, 0.0)
    assert (cfg.epochs, cfg.adam_epsilon, cfg.jola.gate_schedule) == (20, 1e-8, "expon")
    assert cfg.jola.penalty == "reference"
    assert profile_defaults("reference-code")["lr"] == 5e-3


def test_leaf_names_are_unique_and_flat_nested_yaml_round_trip(tmp_path):
    names = list(leaf_fields())
    assert len(names) == len(set(names))
    cfg = RunConfig.from_dict(
        {"base": {"dtype": "bf16"}, "lr": "0.002", "jola.layers": "0, 1", "test_size": "none"}
    )
    assert (cfg.dtype, cfg.lr, cfg.jola.layers, cfg.test_size) == ("bf16", 0.002, [0, 1], None)
    assert RunConfig.from_dict(cfg.to_flat_dict()) == cfg
    assert RunConfig.from_dict(cfg.to_nested_dict()) == cfg
    path = tmp_path / "run.yaml"
    cfg.to_yaml(path)
    assert RunConfig.from_yaml(path) == cfg
    assert yaml.safe_load(path.read_text())["optim"]["lr"] == 0.002


def test_every_bad_field_is_listed_at_once():
    bad = {
        "lr": -1,
        "jola.temperature": 0,
        "lr_schedule": "warp",
        "learning_rate": 3,
        "batch_size": "eight",
        "jola.gate_lambda": "sometimes",
    }
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(bad, source="trial t1")
    msg = str(info.value)
    assert "trial t1: 6 invalid field(s)" in msg
    for name in (
        "lr:",
        "jola.temperature:",
        "lr_schedule:",
        "learning_rate: unknown",
        "batch_size:",
        "jola.gate_lambda:",
    ):
        assert name in msg


def _parse(argv):
    from jola_ray.train import commands

    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    return parser.parse_args(argv)


def test_train_help_lists_every_leaf_as_a_flag():
    from jola_ray.train import commands

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    commands.register(sub)
    text = sub.choices["train"].format_help()
    assert all("--" + name.replace("_", "-") in text for name in leaf_fields())


def test_cli_flags_override_the_yaml_file_and_bad_flags_stop_before_loading(tmp_path, monkeypatch):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 0.01\nepochs: 3\nbase:\n  model: tiny-qwen2\n")
    args = _parse(["train", "--config", str(path), "--lr", "0.5", "--jola.per-example-gates"])
    overrides = {k: v for k, v in vars(args).items() if k in leaf_fields()}
    cfg = RunConfig.from_yaml(args.config, overrides)
    assert (cfg.lr, cfg.epochs, cfg.model, cfg.jola.per_example_gates) == (
        0.5,
        3,
        "tiny-qwen2",
        True,
    )

    import jola_ray.train.pipeline as run_module

    monkeypatch.setattr(run_module, "run", lambda *a, **k: pytest.fail("the run must not start"))
    args = _parse(["train", "--lr", "-1", "--jola.temperature", "0", "--output-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match="2 invalid field"):
        args.func(args)
