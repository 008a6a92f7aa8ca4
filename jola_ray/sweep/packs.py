"""Trial packs in the sweep: successive halving inside a pack, and each member's trial files.

A pack trial (``pack:`` in the space) is one Ray trial that trains several configurations of
one group (``jola_ray.train.pack``). Ray's scheduler does not stop it; the pack prunes its own
members at the space's ASHA rungs, synchronously (``SuccessiveHalving``): every live member
has reached the rung, so the decision never depends on which trial reported first.

Every member still gets its own trial directory next to Ray's, in the layout ``analysis`` reads
(``params.json``, ``result.json``, ``checkpoint_00000N/`` with the final files, ``error.txt``
if the pack failed); its ``params.json`` is the trial dict it would have had unpacked, plus
``pack_trial`` (the Ray trial that trained it). The pack trial's own directory holds the pack's
checkpoints (every member's state) and says ``pack`` in its ``params.json``; analysis reads the
members and skips the pack.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from typing import Any

MEMBER_SEP = "~"  # <pack trial dir>~<config name>: a member's trial directory


class SuccessiveHalving:
    """``prune(epoch, rows) -> members to stop`` at ASHA's rungs, over all live members at once.

    Rungs are ``grace_period * reduction_factor**i`` below ``max_t`` (Ray's ASHA milestones).
    At a rung a member continues when its ``metric`` is at least the ``1 - 1/reduction_factor``
    quantile of every live member's value there (the cut ASHA applies, here with all values
    known); a non-finite value counts as the worst. At ``max_t`` and after, nothing is stopped.
    """

    def __init__(
        self, metric: str, mode: str, grace_period: int, reduction_factor: float, max_t: int
    ):
        self.metric = metric
        self.mode = mode
        self.reduction_factor = reduction_factor
        self.max_t = max_t
        rungs, r = [], grace_period
        while r < max_t:
            rungs.append(int(r))
            r = r * reduction_factor
        self.rungs = set(rungs)
        self.decisions: list[tuple[int, list[int], list[int]]] = []  # (epoch, kept, stopped)

    def __call__(self, epoch: int, rows: dict[int, dict]) -> set[int]:
        if epoch not in self.rungs or epoch >= self.max_t or len(rows) < 2:
            return set()
        sign = 1.0 if self.mode == "max" else -1.0
        values = {}
        for k, row in rows.items():
            v = row.get(self.metric)
            ok = isinstance(v, (int, float)) and math.isfinite(v)
            values[k] = sign * float(v) if ok else -math.inf
        cutoff = _percentile(sorted(values.values()), 1 - 1 / self.reduction_factor)
        stop = {k for k, v in values.items() if v < cutoff}
        self.decisions.append((epoch, sorted(set(rows) - stop), sorted(stop)))
        return stop


def _percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolation quantile of a sorted list (numpy's default), -inf aware."""
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    if lo == hi or ordered[lo] == ordered[hi]:
        return ordered[lo]
    if math.isinf(ordered[lo]):
        return ordered[hi] if pos > lo else ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def member_dirname(pack_dirname: str, config_name: str) -> str:
    return f"{pack_dirname}{MEMBER_SEP}{re.sub(r'[^A-Za-z0-9_.=-]+', '_', config_name)}"


class MemberRecords:
    """One member's trial directory on the experiment's storage (a ``pyarrow.fs`` filesystem).

    ``write(row)`` keeps ``result.json`` as the member's reports so far: a row replaces the
    rows of its epoch and later ones (a resumed pack trains an epoch again), a final row
    follows its epoch's row. ``finish(final_dir)`` copies the final files into
    ``checkpoint_000000/``; ``error(text)`` writes ``error.txt``.
    """

    FINAL_FILES = (
        "metrics.json",
        "predictions.jsonl",
        "gates.csv",
        "edit.safetensors",
        "config.yaml",
    )

    def __init__(self, fs, path: str, params: dict[str, Any], trial_id: str):
        self.fs = fs
        self.path = path.rstrip("/")
        self.trial_id = trial_id
        self.rows: list[dict] = []
        fs.create_dir(self.path, recursive=True)
        self._put("params.json", json.dumps(params, indent=1, default=str))
        with contextlib.suppress(FileNotFoundError, OSError):  # a retried pack starts clean
            fs.delete_file(f"{self.path}/error.txt")
        existing = self._get("result.json")
        if existing:
            self.rows = [json.loads(line) for line in existing.splitlines() if line.strip()]

    def _put(self, name: str, text: str) -> None:
        with self.fs.open_output_stream(f"{self.path}/{name}") as out:
            out.write(text.encode())

    def _get(self, name: str) -> str | None:
        try:
            with self.fs.open_input_stream(f"{self.path}/{name}") as stream:
                return stream.read().decode()
        except (FileNotFoundError, OSError):
            return None

    def write(self, row: dict) -> None:
        finished = row.get("run_status") == "finished"
        epoch = row.get("epoch", 0)

        def keep(r: dict) -> bool:
            e = r.get("epoch", 0)
            return e < epoch or (finished and e == epoch and r.get("run_status") != "finished")

        self.rows = [r for r in self.rows if keep(r)]
        seconds = row.get("cost_wall_s", row.get("pack_wall_s"))  # the member's share
        self.rows.append(
            {
                **row,
                "trial_id": self.trial_id,
                "training_iteration": len(self.rows) + 1,
                **({"time_total_s": seconds} if seconds is not None else {}),
            }
        )
        text = "".join(json.dumps(r, default=str) + "\n" for r in self.rows)
        self._put("result.json", text)

    def finish(self, final_dir: str) -> None:
        import os

        target = f"{self.path}/checkpoint_000000"
        self.fs.create_dir(target, recursive=True)
        for name in self.FINAL_FILES:
            src = os.path.join(final_dir, name)
            if os.path.isfile(src):
                with open(src, "rb") as fh, self.fs.open_output_stream(f"{target}/{name}") as out:
                    out.write(fh.read())

    def error(self, text: str) -> None:
        self._put("error.txt", text)
