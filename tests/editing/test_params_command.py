"""`jola-ray params`: counts and geometry from a config, without weights."""

import argparse
import json

import pytest

from jola_ray.errors import JolaRayError
from jola_ray.methods.commands import register


def _run(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_params_tiny_jola(capsys):
    assert _run(["params", "--model", "tiny-llama", "--method", "jola"]) == 0
    out = capsys.readouterr().out
    assert "2 layers x 4 heads (kv heads 2), head_dim 8" in out
    assert "jola        144 trainable" in out  # 2 * (2*4*8 + 2*4)


def test_params_bare_config_json_lofit(tmp_path, capsys):
    from jola_ray.tiny import tiny_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_config("qwen2").to_dict()))
    assert _run(["params", "--model", str(path), "--method", "lofit", "--lofit.top_k", "3"]) == 0
    out = capsys.readouterr().out
    assert "(qwen2)" in out
    assert "stage1_params: 64" in out  # stage 1: scale vectors on all heads
    assert "lofit       24 trainable" in out  # stage 2: biases on the top 3 heads


def test_params_offline_hub_id_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(
        JolaRayError, match="HF_HUB_OFFLINE is set and it is not in the local cache"
    ):
        _run(["params", "--model", "no-such-org/no-such-model"])


def test_params_bad_inputs(tmp_path):
    with pytest.raises(JolaRayError, match="unknown tiny model"):
        _run(["params", "--model", "tiny-gpt9"])
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(JolaRayError, match="no `model_type`"):
        _run(["params", "--model", str(bad)])
    with pytest.raises(JolaRayError, match="lofit.top_k"):
        _run(["params", "--model", "tiny-llama", "--method", "lofit", "--lofit.top_k", "99"])
