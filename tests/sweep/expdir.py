"""Read an experiment directory the way the analysis layer does (files only)."""

from __future__ import annotations

import json
from pathlib import Path


def read_trials(exp_dir) -> list[dict]:
    """One dict per trial dir: params, result rows (oldest first), error text, dir name."""
    out = []
    for params in sorted(Path(exp_dir).glob("*/params.json")):
        d = params.parent
        result = d / "result.json"
        rows = (
            [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
            if result.exists()
            else []
        )
        error = d / "error.txt"
        out.append(
            {
                "dir": d,
                # Ray's grid axis wraps the trial's dict: {"trial": {...}}
                "params": json.loads(params.read_text())["trial"],
                "rows": rows,
                "error": error.read_text() if error.exists() else None,
            }
        )
    return out


def status(trial: dict) -> str:
    """The contract's rule: finished if a row says so, errored if error.txt, else pruned."""
    if any(r.get("run_status") == "finished" for r in trial["rows"]):
        return "finished"
    if trial["error"] is not None:
        return "errored"
    return "pruned"


def by_task_config(trials: list[dict]) -> dict[tuple[str, str], dict]:
    return {(t["params"]["task"], t["params"]["hp"]["config_name"]): t for t in trials}
