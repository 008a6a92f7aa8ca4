"""ASHA that compares a trial only with the trials of its group.

Ray's ``AsyncHyperBandScheduler`` pools every trial into one set of rungs, so with tasks whose
metric scales differ, the low-scale task's trials are pruned by the high-scale task's. Here each
group (``trial.config["group"]``: same method, model, task, seed and extra axes; only the
hyperparameter configuration differs) gets its own ASHA.

Two rules on top of ASHA's:

* A result at ``epoch >= max_t`` or with ``run_status == "finished"`` is recorded but never
  stopped: the run's final report (test metrics) comes after the last epoch's report with the
  same epoch, and must not be cut. The inner ASHA gets ``max_t + 1`` so it records the top rung
  instead of stopping there.
* Ray does not save scheduler state. After a restore, each trial's recorded results
  (``result.json`` in its trial directory) are replayed into its group's rungs when Tune re-adds
  the trial, so decisions already taken stand and new ones see the same rung values.
"""

from __future__ import annotations

import logging
from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler

from analysis.load import read_result_rows
from jola_ray.sweep.space import trial_of

logger = logging.getLogger(__name__)


class GroupedASHA(FIFOScheduler):
    """One ``AsyncHyperBandScheduler`` per group key; metric and mode come from TuneConfig."""

    def __init__(
        self,
        max_t: int,
        grace_period: int = 1,
        reduction_factor: float = 3,
        brackets: int = 1,
        time_attr: str = "epoch",
        group_attr: str = "group",
    ):
        super().__init__()
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.brackets = brackets
        self.time_attr = time_attr
        self.group_attr = group_attr
        self._metric: str | None = None
        self._mode: str | None = None
        self._groups: dict[str, AsyncHyperBandScheduler] = {}
        self._group_of: dict[str, str] = {}
        self.stopped: dict[str, Any] = {}  # trial_id -> time_attr value where it was stopped
        self.replayed = 0  # results replayed into rungs after a restore

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if metric:
            self._metric = metric
        if mode:
            self._mode = mode
        return True

    def _sub(self, trial: Trial) -> AsyncHyperBandScheduler:
        group = str(trial_of(trial.config).get(self.group_attr, "all"))
        self._group_of[trial.trial_id] = group
        if group not in self._groups:
            self._groups[group] = AsyncHyperBandScheduler(
                time_attr=self.time_attr,
                metric=self._metric,
                mode=self._mode,
                max_t=self.max_t + 1,  # record the top rung; never stop on it (module docstring)
                grace_period=self.grace_period,
                reduction_factor=self.reduction_factor,
                brackets=self.brackets,
            )
        return self._groups[group]

    def on_trial_add(self, tune_controller, trial: Trial):
        if "pack" in trial_of(trial.config):
            return  # never in a group's rungs: its members' rungs are inside the pack
        sub = self._sub(trial)
        sub.on_trial_add(tune_controller, trial)
        if trial.last_result and self.time_attr in trial.last_result:
            self._replay(tune_controller, sub, trial)

    def _replay(self, tune_controller, sub: AsyncHyperBandScheduler, trial: Trial) -> None:
        """Feed a restored trial's recorded results into its group's rungs (no decisions)."""
        try:
            rows = _read_results(trial)
        except OSError as err:
            logger.warning("could not replay results of %s into ASHA: %s", trial, err)
            return
        for row in rows:
            if self.time_attr in row and self._metric in row:
                sub.on_trial_result(tune_controller, trial, row)
                self.replayed += 1

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if "pack" in trial_of(trial.config):
            return TrialScheduler.CONTINUE  # a pack prunes its own members (sweep/packs.py)
        sub = self._groups[self._group_of[trial.trial_id]]
        action = sub.on_trial_result(tune_controller, trial, result)
        last = result.get(self.time_attr, 0) >= self.max_t
        if last or result.get("run_status") == "finished":
            return TrialScheduler.CONTINUE
        if action == TrialScheduler.STOP:
            self.stopped[trial.trial_id] = result.get(self.time_attr)
        return action

    def _sub_of(self, trial: Trial) -> AsyncHyperBandScheduler | None:
        return self._groups.get(self._group_of.get(trial.trial_id, ""))

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict):
        sub = self._sub_of(trial)
        if sub is not None and trial.trial_id in sub._trial_info:
            sub.on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial):
        sub = self._sub_of(trial)
        if sub is not None and trial.trial_id in sub._trial_info:
            sub.on_trial_remove(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial):
        sub = self._sub_of(trial)
        if sub is not None:
            sub.on_trial_error(tune_controller, trial)

    def debug_string(self) -> str:
        return (
            f"GroupedASHA: {len(self._groups)} groups, {len(self.stopped)} trials stopped, "
            f"max_t {self.max_t}, grace {self.grace_period}, rf {self.reduction_factor}"
        )


def _read_results(trial: Trial) -> list[dict]:
    """The trial's recorded results, oldest first, from ``result.json`` in its storage dir."""
    return read_result_rows(trial.storage.storage_filesystem, trial.path)
