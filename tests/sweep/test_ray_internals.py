"""Ray internals the sweep relies on: a Ray that changes them must fail here, loudly.

``GroupedASHA`` (jola_ray/sweep/scheduler.py) forwards ``on_trial_complete`` and
``on_trial_remove`` to its group's ``AsyncHyperBandScheduler`` only for trials in that
scheduler's private ``_trial_info`` (trial_id -> bracket); Ray raises KeyError for others.
The lower bound ray>=2.60 in pyproject.toml is the version this was tested with.
"""

from __future__ import annotations

from types import SimpleNamespace

import ray
from ray.tune.schedulers import AsyncHyperBandScheduler

WHERE = "jola_ray/sweep/scheduler.py (GroupedASHA) reads AsyncHyperBandScheduler._trial_info"


def _trial(tid):
    return SimpleNamespace(trial_id=tid, config={})


def test_asha_keeps_trial_info_keyed_by_trial_id():
    asha = AsyncHyperBandScheduler(time_attr="epoch", metric="m", mode="max", max_t=9)
    assert isinstance(getattr(asha, "_trial_info", None), dict), (
        f"Ray {ray.__version__} has no dict AsyncHyperBandScheduler._trial_info: {WHERE}"
    )
    a, b = _trial("a"), _trial("b")
    asha.on_trial_add(None, a)
    asha.on_trial_add(None, b)
    assert set(asha._trial_info) == {"a", "b"}, f"Ray {ray.__version__} changed it: {WHERE}"
    asha.on_trial_complete(None, a, {"epoch": 1, "m": 1.0})
    assert set(asha._trial_info) == {"b"}, f"Ray {ray.__version__}: completion no longer drops it"
    asha.on_trial_remove(None, b)
    assert asha._trial_info == {}
    try:  # the reason GroupedASHA checks membership first
        asha.on_trial_complete(None, a, {"epoch": 1, "m": 1.0})
    except KeyError:
        pass
    else:
        raise AssertionError(
            f"Ray {ray.__version__}: completing an unknown trial no longer raises; "
            f"the membership check in {WHERE} may be obsolete"
        )


def test_ray_is_at_least_the_tested_version():
    major, minor = (int(x) for x in ray.__version__.split(".")[:2])
    assert (major, minor) >= (2, 60), f"ray {ray.__version__} is older than the tested 2.60"
