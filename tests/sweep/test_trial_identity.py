"""What identifies a trial outside its directory: Ray's trial name, the actor's repr, the
gauges' tags and their refresher, and the tracker flag (no Ray cluster needed)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from jola_ray.errors import ConfigError
from jola_ray.sweep.runner import trial_name
from jola_ray.sweep.space import TRIAL_KEY, parse_space
from jola_ray.sweep.trackers import parse_trackers, tracker_callbacks
from jola_ray.sweep.trainable import GAUGE_TAGS, TrialGauges, gauge_tags, trial_repr


def space_trials(**over):
    raw = {
        "name": "ids",
        "tasks": ["demo_a"],
        "seeds": [7],
        "models": ["m"],
        "methods": ["jola"],
        "axes": {"train_size": [100, 1000]},
        "configs": [{"name": "c1", "lr": 0.2, "jola.temperature": 0.5}],
        "resources": {"cpu": 1, "gpu": 0},
    }
    raw.update(over)
    # As Ray hands each trial its config: the grid's trial dict under the ``trial`` key.
    return [{TRIAL_KEY: t} for t in parse_space(raw, "inline", check_registry=False).trials()]


def test_trial_name_and_repr_show_the_grid_point_and_configuration():
    small, large = space_trials()
    names = [trial_name(SimpleNamespace(config=c, trial_id="ab_00001")) for c in (small, large)]
    assert names == [
        "demo_a-s7-jola-c1-train_size=100-ab_00001",
        "demo_a-s7-jola-c1-train_size=1000-ab_00001",
    ]
    text = trial_repr(names[0], small)
    for part in (
        "demo_a-s7-jola-c1",
        "seed=7",
        "jola",
        "c1",
        "train_size=100",
        "lr=0.2",
        "jola.temperature=0.5",
    ):
        assert part in text


class FakeGauge:
    sets: list = []

    def __init__(self, name, description="", tag_keys=()):
        self.name, self.tag_keys = name, tag_keys

    def set(self, value, tags):
        assert set(tags) == set(self.tag_keys)
        FakeGauge.sets.append((self.name, value, dict(tags), time.monotonic()))


def test_gauge_tags_separate_experiments_and_extra_axes():
    small, large = space_trials()
    a, b = gauge_tags(small, "exp1"), gauge_tags(large, "exp1")
    assert set(a) == set(GAUGE_TAGS)
    assert a["experiment"] == "exp1" and a["axes"] == "train_size=100"
    assert a != b  # the train_size values no longer collide on one series


def test_gauges_are_refreshed_while_running_and_stop_at_the_end():
    FakeGauge.sets = []
    (cfg, _) = space_trials()
    g = TrialGauges(cfg, experiment="e", gauge_cls=FakeGauge, refresh_s=0.05)
    g.update({"dev_score": 42.5, "epoch": 1, "dev_loss": float("nan")})
    time.sleep(0.4)
    g.close()
    assert not g.refreshing
    n = len(FakeGauge.sets)
    scores = [s for s in FakeGauge.sets if s[0] == "jola_trial_dev_score"]
    assert len(scores) >= 4 and {s[1] for s in scores} == {42.5}  # re-set between reports
    assert not [s for s in FakeGauge.sets if s[0] == "jola_trial_dev_loss"]  # NaN: not set
    time.sleep(0.2)
    assert len(FakeGauge.sets) == n  # nothing set after the trial ended


def test_refresher_stops_when_the_trial_thread_is_gone():
    """Ray ends a pruned trial's function without a return: the refresher must not outlive it."""
    FakeGauge.sets = []
    (cfg, _) = space_trials()
    box = {}

    def trial_thread():
        box["g"] = TrialGauges(cfg, gauge_cls=FakeGauge, refresh_s=0.05)
        box["g"].update({"epoch": 1})

    t = threading.Thread(target=trial_thread)
    t.start()
    t.join()
    box["g"]._thread.join(timeout=2)
    assert not box["g"].refreshing


def test_log_to_flag_is_checked_before_ray_starts():
    assert parse_trackers(["tensorboard,tensorboard"]) == ["tensorboard"]
    with pytest.raises(ConfigError, match="expected one of tensorboard, wandb, mlflow"):
        parse_trackers(["neptune"])
    import importlib.util

    for name, module in (("wandb", "wandb"), ("mlflow", "mlflow")):
        if importlib.util.find_spec(module) is None:
            with pytest.raises(ConfigError, match=f"pip install {module}"):
                parse_trackers([name])
    from ray.tune.logger import TBXLoggerCallback

    (cb,) = tracker_callbacks(["tensorboard"], "exp")
    assert isinstance(cb, TBXLoggerCallback)
