"""A searcher that hands out a precomputed list of trial configs, one per grid point.

Ray's ``grid_search`` crosses every axis, but zero-shot trials have no hyperparameter
configurations, and the ``params.json`` layout (task, seed, model, method at the top, ``hp``,
``fixed``, ``group``) is fixed by the contract, so the space expands itself and this searcher
serves the dicts in order. Its position is saved with the experiment, so a restored sweep does
not hand out a point twice.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

from ray.tune.search import Searcher


class GridPoints(Searcher):
    """Suggests ``points[0]``, ``points[1]``, ... then reports the search as finished."""

    def __init__(self, points: list[dict[str, Any]]):
        super().__init__()
        self.points = points
        self.next_index = 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.next_index >= len(self.points):
            return Searcher.FINISHED
        point = copy.deepcopy(self.points[self.next_index])
        self.next_index += 1
        return point

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"points": self.points, "next_index": self.next_index}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.points, self.next_index = state["points"], state["next_index"]
