"""GroupedASHA decisions, driven directly with stand-in trials (no cluster, deterministic).

ASHA's rule (ray 2.60, reduction factor rf): when a trial first reaches a rung it is stopped if
its metric is below the (1 - 1/rf) percentile of the values already recorded at that rung; the
first trial at a rung always continues. The expectations below apply that rule by hand.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pyarrow.fs
from ray.tune.schedulers import AsyncHyperBandScheduler, TrialScheduler

from jola_ray.sweep.scheduler import GroupedASHA

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def trial(tid: str, group: str, path: str = "", last_result=None):
    storage = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem())
    return SimpleNamespace(
        trial_id=tid,
        config={"group": group},
        last_result=last_result or {},
        path=path,
        storage=storage,
    )


def grouped(max_t=3, rf=3):
    sch = GroupedASHA(max_t=max_t, grace_period=1, reduction_factor=rf)
    sch.set_search_properties("dev_score", "max")
    return sch


def feed(sch, t, epoch, score, **extra):
    return sch.on_trial_result(None, t, {"epoch": epoch, "dev_score": score, **extra})


def test_groups_do_not_prune_each_other_but_pooled_asha_does():
    # Task B scores 10x task A. B's trials arrive first at rung 1 (epoch 1).
    b = [trial(f"b{i}", "task=b") for i in range(3)]
    a = [trial(f"a{i}", "task=a") for i in range(3)]
    b_scores, a_scores = [1.0, 2.0, 3.0], [0.1, 0.2, 0.3]
    pooled = AsyncHyperBandScheduler(
        time_attr="epoch", metric="dev_score", mode="max", max_t=3, reduction_factor=3
    )
    ours = grouped()
    for t in b + a:
        pooled.on_trial_add(None, t)
        ours.on_trial_add(None, t)
    pooled_actions = [
        pooled.on_trial_result(None, t, {"epoch": 1, "dev_score": s})
        for t, s in zip(b + a, b_scores + a_scores, strict=True)
    ]
    ours_actions = [feed(ours, t, 1, s) for t, s in zip(b + a, b_scores + a_scores, strict=True)]
    # Ascending within each task: each trial is the best of its group so far -> continue.
    assert ours_actions == [CONTINUE] * 6
    # Pooled: every A trial is below the 66.7th percentile of B's 1, 2, 3 -> stopped.
    cutoff = np.percentile([1.0, 2.0, 3.0], (1 - 1 / 3) * 100)
    assert all(s < cutoff for s in a_scores)
    assert pooled_actions == [CONTINUE] * 3 + [STOP] * 3


def test_a_weak_config_is_pruned_within_its_group():
    ours = grouped()
    ts = [trial(f"t{i}", "g") for i in range(3)]
    for t in ts:
        ours.on_trial_add(None, t)
    assert feed(ours, ts[0], 1, 0.5) == CONTINUE  # first at the rung
    assert feed(ours, ts[1], 1, 0.2) == STOP  # below 0.5
    assert feed(ours, ts[2], 1, 0.9) == CONTINUE
    assert ours.stopped == {"t1": 1}


def test_last_epoch_and_final_report_are_never_stopped():
    ours = grouped(max_t=3)
    ts = [trial(f"t{i}", "g") for i in range(2)]
    for t in ts:
        ours.on_trial_add(None, t)
    for epoch in (1, 2, 3):
        assert feed(ours, ts[0], epoch, 0.9) == CONTINUE
    assert feed(ours, ts[1], 1, 0.95) == CONTINUE
    # rung 3 holds t0's 0.9: t1 is below it at the last epoch, yet it continues to its
    # final report (the test evaluation)
    assert feed(ours, ts[1], 3, 0.1) == CONTINUE
    assert feed(ours, ts[1], 3, 0.1, run_status="finished", test_score=0.1) == CONTINUE
    # Ray's ASHA alone stops any result at epoch >= max_t: the final report would be lost
    ray_asha = AsyncHyperBandScheduler(
        time_attr="epoch", metric="dev_score", mode="max", max_t=3, grace_period=1
    )
    t = trial("x", "g")
    ray_asha.on_trial_add(None, t)
    assert ray_asha.on_trial_result(None, t, {"epoch": 3, "dev_score": 1.0}) == STOP


def test_restore_replays_recorded_results_into_the_rungs(tmp_path):
    # A trial pruned before the driver died: its result.json holds epoch 1 at score 0.8.
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    rows = [{"epoch": 1, "dev_score": 0.8, "run_status": "running"}]
    (old_dir / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    restored = trial("old", "g", path=str(old_dir), last_result=rows[-1])
    fresh = trial("new", "g")
    ours = grouped()
    ours.on_trial_add(None, restored)
    ours.on_trial_add(None, fresh)
    assert ours.replayed == 1
    # Without the replay "new" would be first at rung 1 and continue; with it, 0.5 < 0.8.
    assert feed(ours, fresh, 1, 0.5) == STOP
    empty = grouped()
    empty.on_trial_add(None, trial("new", "g"))
    assert feed(empty, trial("new", "g"), 1, 0.5) == CONTINUE


def test_replay_skips_a_result_line_cut_off_when_the_driver_died(tmp_path):
    # Killed while Ray wrote epoch 2: the first row stands, the cut line is skipped.
    d = tmp_path / "cut"
    d.mkdir()
    first = {"epoch": 1, "dev_score": 0.8, "run_status": "running"}
    (d / "result.json").write_text(json.dumps(first) + '\n{"epoch": 2, "dev_sc')
    ours = grouped()
    ours.on_trial_add(None, trial("cut", "g", path=str(d), last_result=first))
    assert ours.replayed == 1
    fresh = trial("new", "g")
    ours.on_trial_add(None, fresh)
    assert feed(ours, fresh, 1, 0.5) == STOP
