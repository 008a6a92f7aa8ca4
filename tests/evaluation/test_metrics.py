"""Metrics against hand-computed values and properties (not against the libraries' own calls)."""

import logging
import math

import pytest

from jola_ray.errors import ConfigError
from jola_ray.evaluation import metrics as M


def test_accuracy_exact_and_none_is_wrong():
    assert M.accuracy(["true", "false", None, "True"], ["true", "true", "false", "true"]) == 25.0
    assert math.isnan(M.accuracy([], []))


def test_exact_match_normalises_and_accepts_aliases():
    preds = ["Father.", " the USA", "paris", None]
    answers = [["father"], ["United States", "the usa"], ["London"], ["x"]]
    assert M.exact_match(preds, answers) == 50.0
    assert M.exact_match_one("Grand-Daughter!", ["grand-daughter"])
    assert not M.exact_match_one("granddaughter", ["grand-daughter"])


def test_mc1_and_mc2_by_hand():
    scores = [-1.0, -2.0, -0.5, -3.0]
    correct = (0, 1)
    # best answer (index 0, -1.0) loses to incorrect index 2 (-0.5)
    assert M.mc1_one(scores, correct) == 0.0
    true_mass = math.exp(-1.0) + math.exp(-2.0)
    all_mass = true_mass + math.exp(-0.5) + math.exp(-3.0)
    assert M.mc2_one(scores, correct) == pytest.approx(true_mass / all_mass)
    # another correct answer scoring higher than the best does not matter for MC1
    assert M.mc1_one([-1.0, 5.0, -1.5], (0, 1)) == 1.0
    # ties are not wins
    assert M.mc1_one([-1.0, -1.0], (0,)) == 0.0
    # huge log-likelihoods do not overflow
    assert M.mc2_one([-1000.0, -1001.0], (0,)) == pytest.approx(1 / (1 + math.exp(-1.0)))


SENT = ["the quick brown fox jumps over the lazy dog", "a small cat sat on the warm mat today"]


def test_identical_predictions_score_100_and_disjoint_0():
    refs = [[s] for s in SENT]
    same = M.gem_metrics(SENT, refs)
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "chrf"):
        assert same[key] == pytest.approx(100.0), key
    disjoint = M.gem_metrics(["123 456 7890", "98 76 54 321"], refs)  # no shared character
    for key in ("bleu", "rouge1", "rouge2", "rougeL", "chrf"):
        assert disjoint[key] == pytest.approx(0.0), key


def test_rouge_partial_overlap_by_hand():
    out = M.rouge(["the cat sat"], [["the cat ran"]])
    assert out["rouge1"] == pytest.approx(100 * 2 / 3)  # P = R = 2/3
    assert out["rouge2"] == pytest.approx(50.0)  # (the cat) of 2 bigrams each side
    assert out["rougeL"] == pytest.approx(100 * 2 / 3)  # LCS "the cat"


def test_rouge_stems_and_takes_best_reference():
    assert M.rouge(["running dogs"], [["run dog"]])["rouge1"] == pytest.approx(100.0)
    out = M.rouge(["the cat sat"], [["zebra", "the cat sat"]])
    assert out["rougeL"] == pytest.approx(100.0)


def test_multiple_references_of_unequal_count():
    preds = SENT
    refs = [["nothing alike here at all", SENT[0]], [SENT[1]]]
    out = M.gem_metrics(preds, refs)
    assert out["bleu"] == pytest.approx(100.0)
    assert out["chrf"] == pytest.approx(100.0)


def test_periods_are_kept_in_predictions():
    # The reference evaluation deletes "." from predictions only; a perfect prediction then
    # loses BLEU. Here a perfect prediction with its period scores 100.
    refs = [["The pub is cheap. It serves food."]]
    out = M.gem_metrics(["The pub is cheap. It serves food."], refs)
    assert out["bleu"] == pytest.approx(100.0)
    stripped = M.gem_metrics(["The pub is cheap It serves food"], refs)
    assert stripped["bleu"] < 100.0
    assert stripped["chrf"] < 100.0


def test_meteor_missing_wordnet_is_skipped_with_a_note(monkeypatch, caplog):
    nltk_meteor = pytest.importorskip("nltk.translate.meteor_score")

    def no_wordnet(*args, **kwargs):
        raise LookupError("Resource wordnet not found.")

    monkeypatch.setattr(nltk_meteor, "meteor_score", no_wordnet)
    with caplog.at_level(logging.INFO, logger="jola_ray.evaluation.metrics"):
        out = M.gem_metrics(["a b"], [["a b"]])
    assert "meteor" not in out
    assert "bleu" in out
    assert "wordnet" in caplog.text.lower()


def test_bertscore_without_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "bert_score":
            raise ImportError("no bert_score")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match="bert-score"):
        M.gem_metrics(["a b"], [["a b"]], with_bertscore=True)
