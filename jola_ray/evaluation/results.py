"""Write an evaluation's metrics and predictions: the one results writer of train and evaluate."""

from __future__ import annotations

import json
from pathlib import Path


def write_results(directory: Path, metrics: dict, predictions: list) -> None:
    """``metrics.json`` and ``predictions.jsonl`` (one line per example) in ``directory``."""
    (directory / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(directory / "predictions.jsonl", "w") as fh:
        for p in predictions:
            fh.write(json.dumps(p) + "\n")
