"""evaluate() on fixed continuations: extraction, per-example predictions, aggregate metrics.

The decoder is replaced by a stub returning hand-written continuations, so the expected values
are written by hand; the decoding itself is tested in test_generation.py.
"""

import pytest

from jola_ray.data.task import PROMPT_TEMPLATE, Example, Task
from jola_ray.evaluation import api, evaluate
from jola_ray.tiny import build_tiny


@pytest.fixture(scope="module")
def tiny():
    return build_tiny("llama")


def fixed_outputs(monkeypatch, outputs, seen=None):
    def fake(model, tokenizer, prompts, **kwargs):
        if seen is not None:
            seen.update(kwargs)
        assert len(prompts) == len(outputs)
        return list(outputs)

    monkeypatch.setattr(api, "generate_continuations", fake)


def examples(answers, aliases=None):
    aliases = aliases or [()] * len(answers)
    return [
        Example(
            id=f"e{i}", prompt=PROMPT_TEMPLATE.format(instruction=f"q{i}"), answer=a, aliases=al
        )
        for i, (a, al) in enumerate(zip(answers, aliases, strict=True))
    ]


def test_classification_accuracy_and_predictions(tiny, monkeypatch):
    model, tok = tiny
    task = Task(
        name="piqa",
        benchmark="commonsense",
        kind="classification",
        metrics=("accuracy",),
        primary_metric="accuracy",
        labels=("solution1", "solution2"),
        max_new_tokens=16,
    )
    seen = {}
    fixed_outputs(
        monkeypatch,
        ["solution2 because", "\nthe answer is solution1\nsolution2", "no idea\nsolution1", "x"],
        seen,
    )
    res = evaluate(model, tok, task, examples(["solution2", "solution2", "solution1", "solution1"]))
    assert res.metrics == {"accuracy": 25.0}
    assert [p["prediction"] for p in res.predictions] == ["solution2", "solution1", None, None]
    assert [p["correct"] for p in res.predictions] == [True, False, False, False]
    assert res.predictions[1]["gold"] == "solution2"
    assert res.predictions[0]["id"] == "e0"
    assert seen["max_new_tokens"] == 16 and seen["mode"] == "greedy"


def test_exact_match_with_aliases(tiny, monkeypatch):
    model, tok = tiny
    task = Task(
        name="mquake",
        benchmark="lofit",
        kind="generation",
        metrics=("exact_match",),
        primary_metric="exact_match",
        max_new_tokens=16,
    )
    fixed_outputs(monkeypatch, [" The USA.\nQ: next", "Paris", "\n Granddaughter.\n", "father"])
    exs = examples(
        ["United States of America", "London", "granddaughter", "son"],
        [("USA", "the USA"), (), (), ("boy",)],
    )
    res = evaluate(model, tok, task, exs, max_new_tokens=5)
    assert res.metrics == {"exact_match": 50.0}
    assert [p["correct"] for p in res.predictions] == [True, False, True, False]
    assert res.predictions[0]["prediction"] == "The USA."


def test_gem_metrics_through_evaluate(tiny, monkeypatch):
    model, tok = tiny
    task = Task(
        name="e2e",
        benchmark="gem",
        kind="generation",
        metrics=("bleu", "rougeL", "chrf"),
        primary_metric="rougeL",
        max_new_tokens=64,
    )
    refs = ["The Eagle is a cheap pub. It is near the river.", "Zizzi serves Italian food."]
    # perfect first lines (periods kept) followed by junk on later lines
    fixed_outputs(monkeypatch, [refs[0] + "\njunk junk", " " + refs[1] + "\n###"])
    res = evaluate(model, tok, task, examples(refs))
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "chrf", "exact_match"):
        assert res.metrics[key] == pytest.approx(100.0), key
    assert "bertscore" not in res.metrics
    # a second reference (in aliases) is used when it matches better
    fixed_outputs(monkeypatch, ["A cheap pub by the river.", refs[1]])
    exs = examples(refs, [("A cheap pub by the river.",), ()])
    assert evaluate(model, tok, task, exs).metrics["bleu"] == pytest.approx(100.0)
