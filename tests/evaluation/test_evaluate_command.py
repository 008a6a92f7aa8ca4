"""``jola-ray evaluate``: a saved edit scored from the command line matches scoring it in Python."""

import json

from jola_ray.cli import main
from jola_ray.data import get_task, load_splits
from jola_ray.editing import JoLAConfig, apply_edit, save_edit
from jola_ray.evaluation import evaluate
from jola_ray.tiny import build_tiny


def test_evaluate_applies_the_saved_edit(tmp_path):
    model, tok = build_tiny("demo", seed=0)
    edit = apply_edit(model, JoLAConfig(init_std=1.0), generator=3)  # a large, visible edit
    path = save_edit(edit, tmp_path / "edit.safetensors")
    task = get_task("demo_parity")
    examples = load_splits(task, seed=42, test_size=40).test
    with_edit = evaluate(model, tok, task, examples, mode="label_scoring")
    edit.remove()
    without = evaluate(model, tok, task, examples, mode="label_scoring")
    assert [p["prediction"] for p in with_edit.predictions] != [
        p["prediction"] for p in without.predictions
    ]  # the edit changes predictions, so the check below can tell them apart

    args = ["--model", "tiny-demo", "--task", "demo_parity", "--size", "40"]
    args += ["--decoding", "label_scoring", "--device", "cpu"]
    assert main(["evaluate", *args, "--edit", str(path), "--output-dir", str(tmp_path / "e")]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["test_accuracy"] == with_edit.metrics["accuracy"]
    rows = [json.loads(x) for x in (tmp_path / "e" / "predictions.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows] == [p["prediction"] for p in with_edit.predictions]


def test_evaluate_unknown_task_is_a_clean_error(capsys):
    assert main(["evaluate", "--model", "tiny-demo", "--task", "nope"]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
