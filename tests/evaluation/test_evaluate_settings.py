"""``jola-ray evaluate --edit RUN/edit.safetensors`` re-scores with the run's own settings."""

import json

import pytest

from jola_ray.cli import main
from jola_ray.errors import ConfigError
from jola_ray.evaluation.settings import evaluation_settings, run_config_of
from jola_ray.train import RunConfig, run
from jola_ray.train.config import profile_defaults

RUN = {
    "model": "tiny-llama",
    "task": "demo_parity",
    "seed": 7,
    "train_size": 8,
    "dev_size": 4,
    "test_size": 6,
    "batch_size": 4,
    "epochs": 1,
    "decoding": "beam",
    "num_beams": 2,
    "max_new_tokens": 2,
    "eval_batch_size": 3,
    "device": "cpu",
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    metrics = run(RunConfig.from_dict({**RUN, "output_dir": str(out)}))
    return out, metrics


def test_settings_come_from_the_runs_config_yaml(trained):
    out, _ = trained
    for edit in (out / "edit.safetensors", out / "final" / "edit.safetensors"):
        assert run_config_of(edit) is not None
        settings = evaluation_settings({}, edit, profile_defaults("paper"))
        for key in ("model", "task", "seed", "test_size", "decoding", "num_beams"):
            assert settings.values[key] == RUN[key], key
        assert settings.values["max_new_tokens"] == 2 and settings.values["eval_batch_size"] == 3
    flagged = evaluation_settings({"num_beams": "3"}, out / "edit.safetensors", {})
    assert flagged.values["num_beams"] == "3" and flagged.origin["num_beams"] == "flag"
    plain = evaluation_settings({"model": "m", "task": "boolq"}, None, profile_defaults("paper"))
    assert plain.values["num_beams"] == profile_defaults("paper")["num_beams"]  # train's default
    assert plain.values["eval_batch_size"] == profile_defaults("paper")["eval_batch_size"]
    with pytest.raises(ConfigError, match="give --model and --task"):
        evaluation_settings({}, None, profile_defaults("paper"))


def test_evaluate_reproduces_the_runs_test_score_without_flags(trained, tmp_path, capsys):
    out, metrics = trained
    dest = tmp_path / "e"
    args = ["evaluate", "--edit", str(out / "edit.safetensors"), "--device", "cpu"]
    assert main([*args, "--output-dir", str(dest)]) == 0
    assert "settings from" in capsys.readouterr().err
    got = json.loads((dest / "metrics.json").read_text())
    assert got["examples"] == RUN["test_size"]
    assert got["test_accuracy"] == metrics["test_accuracy"]
    assert got["settings"]["decoding"] == "beam" and got["settings"]["num_beams"] == 2
    run_preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    preds = [json.loads(x) for x in (dest / "predictions.jsonl").read_text().splitlines()]
    assert [p["output"] for p in preds] == [p["output"] for p in run_preds]
