"""Evaluation: batched generation + answer extraction, label and answer log-likelihood
scoring, and the metrics (accuracy, exact match, GEM metrics, TruthfulQA MC1/MC2), in percent.
"""

from jola_ray.evaluation.api import MODES, EvalResult, evaluate
from jola_ray.evaluation.extraction import extract_answer

__all__ = ["MODES", "EvalResult", "evaluate", "extract_answer"]
