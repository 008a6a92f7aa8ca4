"""Metrics, all in percent (0-100): accuracy, exact match, GEM metrics, TruthfulQA MC1/MC2.

GEM metrics come from maintained libraries: sacrebleu (corpus BLEU, chrF), rouge-score
(ROUGE-1/2/L F-measure with Porter stemming, best reference per example), nltk METEOR when its
WordNet data is installed, and BERTScore only when asked for (it downloads a scoring model).
Predictions are scored as generated: unlike the reference, periods are not removed from
predictions (the references keep theirs, so removing them only from one side lowers BLEU).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from jola_ray.errors import ConfigError
from jola_ray.evaluation.extraction import normalize_answer

log = logging.getLogger(__name__)

GEM_METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "chrf", "meteor", "bertscore")


def accuracy(predictions: Sequence[str | None], golds: Sequence[str]) -> float:
    """Percent of predictions equal to the gold label (exactly; None is wrong)."""
    if not golds:
        return math.nan
    hits = sum(p is not None and p == g for p, g in zip(predictions, golds, strict=True))
    return 100.0 * hits / len(golds)


def exact_match_one(prediction: str | None, answers: Sequence[str]) -> bool:
    """Whether the normalised prediction equals any normalised accepted answer."""
    if prediction is None:
        return False
    pred = normalize_answer(prediction)
    return any(pred == normalize_answer(a) for a in answers)


def exact_match(predictions: Sequence[str | None], answers: Sequence[Sequence[str]]) -> float:
    """Percent of predictions matching one of their accepted answers (normalised)."""
    if not answers:
        return math.nan
    hits = sum(exact_match_one(p, a) for p, a in zip(predictions, answers, strict=True))
    return 100.0 * hits / len(answers)


def mc1_one(scores: Sequence[float], correct: Sequence[int], best: int | None = None) -> float:
    """1.0 if the best answer (``best``, default the first index of ``correct``) outscores every
    incorrect choice. Other correct answers are ignored, as in the TruthfulQA/ITI evaluation.
    """
    best_score = scores[correct[0] if best is None else best]
    true_set = set(correct)
    wrong = [s for i, s in enumerate(scores) if i not in true_set]
    return float(all(best_score > s for s in wrong))


def mc2_one(scores: Sequence[float], correct: Sequence[int]) -> float:
    """Normalised probability mass on the correct choices: sum p_true / sum p_all."""
    top = max(scores)
    probs = [math.exp(s - top) for s in scores]  # shift for stability; cancels in the ratio
    true_mass = sum(probs[i] for i in set(correct))
    return true_mass / sum(probs)


def _references(refs: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Per-example reference lists -> sacrebleu's reference streams (None fills short lists)."""
    width = max(len(r) for r in refs)
    return [[r[j] if j < len(r) else None for r in refs] for j in range(width)]


def bleu(predictions: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU (13a tokenization), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_bleu(list(predictions), _references(refs)).score)


def chrf(predictions: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus chrF (character 6-grams, beta 2), 0-100."""
    import sacrebleu

    return float(sacrebleu.corpus_chrf(list(predictions), _references(refs)).score)


def rouge(predictions: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (stemmed; best reference per example), 0-100."""
    from rouge_score import rouge_scorer

    kinds = ("rouge1", "rouge2", "rougeL")
    scorer = rouge_scorer.RougeScorer(list(kinds), use_stemmer=True)
    totals = dict.fromkeys(kinds, 0.0)
    for pred, ref in zip(predictions, refs, strict=True):
        scores = scorer.score_multi(list(ref), pred)
        for kind in kinds:
            totals[kind] += scores[kind].fmeasure
    return {kind: 100.0 * totals[kind] / len(predictions) for kind in kinds}


def meteor(predictions: Sequence[str], refs: Sequence[Sequence[str]]) -> float | None:
    """Mean nltk METEOR, 0-100; None (with a logged note) if nltk or WordNet is missing."""
    try:
        from nltk.translate.meteor_score import meteor_score

        values = [
            meteor_score([r.split() for r in ref], pred.split())
            for pred, ref in zip(predictions, refs, strict=True)
        ]
    except ImportError:
        log.info("METEOR skipped: nltk is not installed (pip install 'jola-ray[gem-extra]')")
        return None
    except LookupError:
        log.info("METEOR skipped: nltk WordNet data missing (python -m nltk.downloader wordnet)")
        return None
    return 100.0 * sum(values) / len(values)


def bertscore(predictions: Sequence[str], refs: Sequence[Sequence[str]]) -> float:
    """Mean BERTScore F1 (bert-score's default English model, best reference), 0-100."""
    try:
        from bert_score import score
    except ImportError as err:
        raise ConfigError(
            "bertscore=True needs the bert-score package: pip install 'jola-ray[gem-extra]'"
        ) from err
    _, _, f1 = score(list(predictions), [list(r) for r in refs], lang="en", verbose=False)
    return 100.0 * float(f1.mean())


def gem_metrics(
    predictions: Sequence[str],
    refs: Sequence[Sequence[str]],
    with_bertscore: bool = False,
) -> dict[str, float]:
    """BLEU, ROUGE-1/2/L, chrF, METEOR (when available) and BERTScore (when asked), 0-100.

    ``refs[i]`` lists the accepted references of prediction ``i`` (at least one).
    """
    if not predictions:
        return {}
    out = {"bleu": bleu(predictions, refs), **rouge(predictions, refs)}
    out["chrf"] = chrf(predictions, refs)
    value = meteor(predictions, refs)
    if value is not None:
        out["meteor"] = value
    if with_bertscore:
        out["bertscore"] = bertscore(predictions, refs)
    return out
