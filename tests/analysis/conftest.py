"""Fake Ray Tune experiment directories in Ray's real file layout, written by hand.

Each trial dir holds params.json (the sweep's nested config), result.json (one JSON object per
line, with Ray's own keys and its nested ``config`` copy), progress.csv (the same history, with
``config/...`` columns), checkpoint_00000N dirs, and error.txt for an errored trial.
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

MODEL = "tiny-llama"
EPOCHS = 3


def write_trial(root, name, params, rows, error=None, gates=None, result_json=True):
    """Write one trial directory; ``rows`` are the trainable's reports (Ray keys are added)."""
    trial = os.path.join(root, name)
    os.makedirs(trial)
    with open(os.path.join(trial, "params.json"), "w") as fh:
        json.dump(params, fh)
    full = []
    for i, row in enumerate(rows, start=1):
        full.append(
            {
                **row,
                "training_iteration": i,
                "trial_id": name[-5:],
                "time_total_s": 10.0 * i,
                "timestamp": 1700000000 + i,
                "done": False,
                "config": params,
            }
        )
        os.makedirs(os.path.join(trial, f"checkpoint_{i - 1:06d}"))
    if result_json:
        with open(os.path.join(trial, "result.json"), "w") as fh:
            for row in full:
                fh.write(json.dumps(row) + "\n")
    flat = pd.json_normalize(full, sep="/")
    flat.to_csv(os.path.join(trial, "progress.csv"), index=False)
    if error is not None:
        with open(os.path.join(trial, "error.txt"), "w") as fh:
            fh.write(error)
    if gates is not None:
        last = os.path.join(trial, f"checkpoint_{len(rows) - 1:06d}")
        gates.to_csv(os.path.join(last, "gates.csv"), index=False)
    return trial


def params(task, seed, method, config_name=None, epochs=EPOCHS, model=MODEL, **extra):
    """The sweep's params.json: keys, nested ``hp`` (the configuration) and ``fixed``."""
    hp = {"config_name": config_name, "lr": 0.001} if config_name else {}
    fixed = {"epochs": epochs, "batch_size": 8, **extra} if epochs else {**extra}
    group = f"method={method}|model={model}|task={task}|seed={seed}"
    return {
        "task": task,
        "seed": seed,
        "model": model,
        "method": method,
        "hp": hp,
        "fixed": fixed,
        "group": group,
    }


def epoch_rows(dev_scores, metric="accuracy"):
    """Per-epoch reports with the given dev scores (epochs 1..n)."""
    return [
        {
            "epoch": e,
            "step": 4 * e,
            "train_loss": 1.0 / e,
            "train_penalty": 0.1,
            "dev_loss": 0.9,
            f"dev_{metric}": score,
            "dev_score": score,
            "open_gate_fraction": 0.5,
            "lr": 0.001,
            "run_status": "running",
        }
        for e, score in enumerate(dev_scores, start=1)
    ]


def finished_rows(dev_scores, tests, gpu_s=0.0, metric="accuracy", params_count=264):
    """Per-epoch rows then the final row; ``tests`` maps metric -> test value (percent)."""
    rows = epoch_rows(dev_scores, metric)
    best = max(range(len(dev_scores)), key=lambda i: dev_scores[i])
    final = dict(rows[-1])
    final.update({f"test_{k}": v for k, v in tests.items()})
    final.update(
        test_score=tests[metric],
        best_epoch=best + 1,
        best_dev_score=dev_scores[best],
        num_selected_heads=6,
        trainable_params=params_count,
        cost_steps=12,
        cost_tokens=3000,
        cost_wall_s=30.0,
        cost_gpu_s=gpu_s,
        cost_peak_mem_gb=0.1,
        run_status="finished",
    )
    return [*rows, final]


def zero_shot_rows(tests, metric="accuracy"):
    """Zero-shot's single report: epoch 0, finished, test metrics only."""
    row = {
        "epoch": 0,
        "step": 0,
        **{f"test_{k}": v for k, v in tests.items()},
        "test_score": tests[metric],
        "trainable_params": 0,
        "cost_gpu_s": 0.0,
        "run_status": "finished",
    }
    return [row]


GATES = pd.DataFrame(
    {
        "layer": [0, 0, 1, 1],
        "head": [0, 1, 0, 1],
        "gate_add": [1.0, 0.0, 0.5, 0.0],
        "gate_mul": [0.0, 0.0, 1.0, 1.0],
    }
)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """boolq + piqa (commonsense), xsum (GEM), demo_sentiment (other); zero_shot and jola.

    Hand-built: a pruned trial, an errored trial, a seed with no finished trial (boolq/jola/3),
    a seed never run (demo_sentiment/jola/3), a tie on dev score (demo_sentiment/jola/2).
    """
    root = tmp_path_factory.mktemp("exp")
    n = iter(range(1000))

    def add(task, seed, method, cfg, rows, **kw):
        i = next(n)
        name = f"trainable_{task}_{method}_{seed}_{cfg}_{i:05d}"
        p = params(task, seed, method, cfg, epochs=EPOCHS if method != "zero_shot" else None)
        write_trial(str(root), name, p, rows, **kw)

    # boolq: zero-shot 50, 52, 51
    for seed, acc in ((1, 50.0), (2, 52.0), (3, 51.0)):
        add("boolq", seed, "zero_shot", None, zero_shot_rows({"accuracy": acc}))
    add("boolq", 1, "jola", "c0", finished_rows([60, 70, 65], {"accuracy": 68.0}))
    add("boolq", 1, "jola", "c1", finished_rows([70, 75, 74], {"accuracy": 72.0}), gates=GATES)
    add("boolq", 2, "jola", "c0", finished_rows([80, 78, 79], {"accuracy": 77.0}))
    add("boolq", 2, "jola", "c1", epoch_rows([60]))  # pruned by ASHA at epoch 1
    add(
        "boolq",
        3,
        "jola",
        "c0",
        epoch_rows([55]),
        error="Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n",
    )
    add("boolq", 3, "jola", "c1", epoch_rows([50, 52]))  # pruned at epoch 2
    # piqa: zero-shot 55 x3; jola one config, 60, 62, 64 (seed 3 via progress.csv only)
    for seed in (1, 2, 3):
        add("piqa", seed, "zero_shot", None, zero_shot_rows({"accuracy": 55.0}))
    add("piqa", 1, "jola", "c0", finished_rows([61, 62, 63], {"accuracy": 60.0}))
    add("piqa", 2, "jola", "c0", finished_rows([61, 62, 63], {"accuracy": 62.0}))
    add(
        "piqa",
        3,
        "jola",
        "c0",
        finished_rows([61, 62, 63], {"accuracy": 64.0}),
        result_json=False,
    )
    # xsum: seed 1 only, GPU seconds recorded
    xs = {"bleu": 5.0, "rougeL": 10.0}
    add("xsum", 1, "zero_shot", None, zero_shot_rows(xs, metric="rougeL"))
    add(
        "xsum",
        1,
        "jola",
        "c0",
        finished_rows([20, 21, 22], {"bleu": 10.5, "rougeL": 20.25}, gpu_s=7200.0, metric="rougeL"),
    )
    # demo_sentiment: jola never ran seed 3; seed 2 ties on dev (c0 wins by name)
    for seed, acc in ((1, 40.0), (2, 45.0), (3, 50.0)):
        add("demo_sentiment", seed, "zero_shot", None, zero_shot_rows({"accuracy": acc}))
    add("demo_sentiment", 1, "jola", "c0", finished_rows([60, 58, 59], {"accuracy": 61.0}))
    add("demo_sentiment", 1, "jola", "c1", finished_rows([65, 64, 63], {"accuracy": 66.0}))
    add("demo_sentiment", 2, "jola", "c0", finished_rows([70, 69, 68], {"accuracy": 69.0}))
    add("demo_sentiment", 2, "jola", "c1", finished_rows([68, 70, 69], {"accuracy": 71.0}))
    return root


@pytest.fixture(scope="session")
def fake():
    """The builders above, for tests that write their own experiment dirs (conftest is not
    importable under --import-mode=importlib)."""
    import types

    return types.SimpleNamespace(
        EPOCHS=EPOCHS,
        write_trial=write_trial,
        params=params,
        epoch_rows=epoch_rows,
        finished_rows=finished_rows,
    )
