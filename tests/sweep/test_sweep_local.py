"""Sweeps with stub runs on the shared local Ray (loopback): layout, grouped ASHA, failures,
retry from checkpoint, resume, live metrics."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
import yaml
from expdir import by_task_config, read_trials, status
from sweep_stubs import stub_space

from jola_ray.cli import main
from jola_ray.errors import ConfigError
from jola_ray.sweep.runner import MARKER, run_sweep
from jola_ray.sweep.space import parse_space

pytestmark = pytest.mark.ray

STUBS = {"make_config": "sweep_stubs.identity"}


def sweep(tmp_path, raw, run_fn="sweep_stubs.scaled_run", **kw):
    space = parse_space(raw, "inline", check_registry=False)
    said = []
    outcome = run_sweep(
        space, storage_path=str(tmp_path), run_fn=run_fn, say=said.append, **STUBS, **kw
    )
    return space, outcome, said


def test_local_ray_binds_to_loopback(ray_cluster):
    import ray

    assert [n["NodeManagerAddress"] for n in ray.nodes()] == ["127.0.0.1"]
    assert ray_cluster["address"].startswith("127.0.0.1:")


def test_sweep_writes_the_contract_layout(ray_cluster, tmp_path):
    raw = stub_space(methods=["jola", "zero_shot"], configs=[{"name": "c1", "lr": 0.2}])
    space, outcome, _ = sweep(tmp_path, raw, reuse_actors=False)  # a fresh process per trial
    exp = tmp_path / "stub"
    assert outcome.experiment_path == str(exp)
    trials = read_trials(exp)
    expected = sorted(json.dumps(t, sort_keys=True) for t in space.trials())
    assert sorted(json.dumps(t["params"], sort_keys=True) for t in trials) == expected
    assert len(trials) == 2 * (1 + 1)
    for t in trials:
        epochs = [r["epoch"] for r in t["rows"]]
        assert epochs == [1, 2, 2]  # per epoch, then the final report at the last epoch
        assert [r["run_status"] for r in t["rows"]] == ["running", "running", "finished"]
        assert t["rows"][-1]["test_score"] == pytest.approx(t["rows"][-2]["dev_score"])
        assert len(list(t["dir"].glob("checkpoint_*"))) == 2  # the latest two (a fallback)
        assert t["error"] is None
    assert outcome.counts() == {"finished": 4, "pruned": 0, "errored": 0}
    assert outcome.exit_code == 0
    marker = json.loads((exp / MARKER).read_text())
    assert marker["fingerprint"] == space.fingerprint() and marker["trials"] == 4


def test_grouped_asha_prunes_per_task_and_keeps_final_rows(ray_cluster, tmp_path):
    """demo_b scores 10x demo_a (sweep_stubs.TASK_SCALE); trials run one at a time in grid
    order (demo_b first), configs lr 0.2, 0.1, 0.3. Within a task c2 arrives at rung 1 below
    c1 and is pruned; c3 is above. Pooled ASHA also prunes every demo_a trial (below demo_b's
    rung values) and cuts demo_b's survivors at max_t before their final report."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    raw = stub_space(
        tasks=["demo_b", "demo_a"],
        configs=[{"name": "c1", "lr": 0.2}, {"name": "c2", "lr": 0.1}, {"name": "c3", "lr": 0.3}],
        fixed={"epochs": 3},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
        max_concurrent_trials=1,
    )
    _, outcome, _ = sweep(tmp_path / "ours", raw, reuse_actors=True)
    ours = by_task_config(read_trials(tmp_path / "ours" / "stub"))
    for task in ("demo_a", "demo_b"):
        assert status(ours[(task, "c2")]) == "pruned"
        assert ours[(task, "c2")]["rows"][-1]["epoch"] == 1
        for c in ("c1", "c3"):
            assert status(ours[(task, c)]) == "finished"
            assert [r["epoch"] for r in ours[(task, c)]["rows"]] == [1, 2, 3, 3]
    assert outcome.counts() == {"finished": 4, "pruned": 2, "errored": 0}

    pooled = AsyncHyperBandScheduler(time_attr="epoch", max_t=3, grace_period=1, reduction_factor=3)
    sweep(tmp_path / "pooled", raw, scheduler=pooled, reuse_actors=True)
    theirs = by_task_config(read_trials(tmp_path / "pooled" / "stub"))
    for c in ("c1", "c2", "c3"):
        assert status(theirs[("demo_a", c)]) == "pruned"
        assert theirs[("demo_a", c)]["rows"][-1]["epoch"] == 1
    for c in ("c1", "c3"):  # reached max_t, but the final (test) row was cut
        assert status(theirs[("demo_b", c)]) == "pruned"
        assert theirs[("demo_b", c)]["rows"][-1]["epoch"] == 3


def test_failed_trial_is_retried_from_its_checkpoint(ray_cluster, tmp_path):
    raw = stub_space(
        tasks=["demo_a"],
        configs=[{"name": "c1", "lr": 0.2}],
        fixed={"epochs": 4, "fail_after": 2, "marker_dir": str(tmp_path)},
        max_failures=1,
    )
    _, outcome, _ = sweep(tmp_path, raw, run_fn="sweep_stubs.flaky_run")
    (t,) = read_trials(tmp_path / "stub")
    assert status(t) == "finished"
    assert outcome.counts()["finished"] == 1 and outcome.exit_code == 0
    # epochs 1-2, crash, then 3-4 from the epoch-2 checkpoint (not from scratch), then final
    assert [r["epoch"] for r in t["rows"]] == [1, 2, 3, 4, 4]
    assert [r["start_epoch"] for r in t["rows"]] == [1, 1, 3, 3, 3]


def test_failing_trials_are_recorded_and_the_sweep_goes_on(
    ray_cluster, tmp_path, capsys, monkeypatch
):
    import functools

    import jola_ray.sweep.runner as runner
    import jola_ray.sweep.space as space_module

    space_file = tmp_path / "space.yaml"
    space_file.write_text(yaml.safe_dump(stub_space(name="bad")))
    # the stubs are injected here; the production CLI has no flags for them
    monkeypatch.setattr(
        space_module, "load_space", functools.partial(space_module.load_space, check_registry=False)
    )
    monkeypatch.setattr(
        runner,
        "run_sweep",
        functools.partial(runner.run_sweep, run_fn="sweep_stubs.bad_run", **STUBS),
    )
    rc = main(["sweep", str(space_file), "--storage-path", str(tmp_path)])
    assert rc == 1
    out = capsys.readouterr().out
    assert "2 finished, 0 pruned, 2 errored" in out
    trials = by_task_config(read_trials(tmp_path / "bad"))
    for c in ("c1", "c2"):
        assert status(trials[("demo_a", c)]) == "finished"
        assert status(trials[("demo_b", c)]) == "errored"
        assert "non-finite training loss" in trials[("demo_b", c)]["error"]


def test_rerun_resumes_and_refuses_a_changed_space(ray_cluster, tmp_path):
    raw = stub_space()
    _, first, _ = sweep(tmp_path, raw, reuse_actors=True)
    rows_before = {t["dir"].name: len(t["rows"]) for t in read_trials(tmp_path / "stub")}
    _, second, said = sweep(tmp_path, raw)
    assert second.resumed and any("resuming" in s for s in said)
    rows_after = {t["dir"].name: len(t["rows"]) for t in read_trials(tmp_path / "stub")}
    assert rows_after == rows_before  # no finished trial ran again
    assert second.counts() == first.counts() == {"finished": 4, "pruned": 0, "errored": 0}
    changed = stub_space(seeds=[1, 2])
    with pytest.raises(ConfigError, match="different search space.*--name"):
        sweep(tmp_path, changed)


def _scrape(url: str, prefix: str, needle: str) -> list[str]:
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return []
    return [ln for ln in text.splitlines() if ln.startswith(prefix) and needle in ln]


@pytest.mark.slow
def test_trials_publish_live_metrics_and_drop_them_at_the_end(ray_cluster, tmp_path):
    """Gauges carry the experiment and the extra axis (two train_size values: two series);
    while a trial holds (longer than the exporter keeps an unrefreshed series) its value stays;
    after the trial ends, its series leaves the exporter."""
    release = tmp_path / "release"
    url = f"http://127.0.0.1:{ray_cluster['metrics_port']}/metrics"
    found: dict[str, list[str]] = {}

    def scrape():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(found.get("score", [])) < 2:
            found["score"] = _scrape(url, "ray_jola_trial_dev_score{", 'task="demo_m"')
            found["gates"] = _scrape(url, "ray_jola_trial_open_gate_fraction{", 'task="demo_m"')
            time.sleep(0.3)
        time.sleep(25)  # no new report meanwhile: the refresher keeps the series alive
        found["held"] = _scrape(url, "ray_jola_trial_dev_score{", 'task="demo_m"')
        release.touch()

    scraper = threading.Thread(target=scrape, daemon=True)
    scraper.start()
    raw = stub_space(
        name="metrics_exp",
        tasks=["demo_m"],
        configs=[{"name": "c1", "lr": 0.2}],
        axes={"train_size": [100, 1000]},
        fixed={"epochs": 1, "release_file": str(release)},
        max_concurrent_trials=2,
    )
    sweep(tmp_path, raw, run_fn="sweep_stubs.metrics_run", reuse_actors=True)
    scraper.join(timeout=120)
    lines = found.get("score", [])
    assert len(lines) == 2, lines
    for tag in ('task="demo_m"', 'seed="1"', 'config="c1"', 'method="jola"'):
        assert all(tag in line for line in lines)
    assert all('experiment="metrics_exp"' in line for line in lines)
    assert sorted('axes="train_size=100"' in line for line in lines) == [False, True]
    assert any('axes="train_size=1000"' in line for line in lines)
    assert all(line.endswith(" 42.5") for line in lines)
    assert found["gates"] and found["gates"][0].endswith(" 0.75")
    assert len(found["held"]) == 2  # still exported 25 s after the last report
    # the trials ended (their worker processes live on: reuse_actors): the series go away
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        left = _scrape(url, "ray_jola_trial_dev_score{", 'experiment="metrics_exp"')
        if not left:
            break
        time.sleep(1)
    assert not left, left


def test_log_to_tensorboard_writes_event_files(ray_cluster, tmp_path):
    raw = stub_space(name="tb", tasks=["demo_a"], configs=[{"name": "c1", "lr": 0.2}])
    sweep(tmp_path, raw, log_to=["tensorboard"])
    (trial,) = [p for p in (tmp_path / "tb").iterdir() if (p / "params.json").exists()]
    assert list(trial.glob("events.out.tfevents.*")), sorted(p.name for p in trial.iterdir())


def test_restore_rebuilds_the_rungs_from_recorded_results(ray_cluster, tmp_path):
    """c1 (lr 0.2) runs first and finishes, c2 (lr 0.1) is pruned at epoch 1. A restored
    experiment's scheduler holds the same rung values (Ray alone would start empty)."""
    from ray import tune

    from jola_ray.sweep.runner import _trainable

    raw = stub_space(
        tasks=["demo_a"],
        fixed={"epochs": 3},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 3},
        max_concurrent_trials=1,
    )
    space, outcome, _ = sweep(tmp_path, raw)
    assert sorted(outcome.statuses.values()) == ["finished", "pruned"]
    trainable = _trainable({"cpu": 1}, "sweep_stubs.scaled_run", "sweep_stubs.identity")
    tuner = tune.Tuner.restore(str(tmp_path / "stub"), trainable=trainable, resume_errored=True)
    scheduler = tuner._local_tuner._tune_config.scheduler  # the instance the restored run uses
    tuner.fit()
    assert scheduler.replayed == 4 + 1  # c1: epochs 1, 2, 3 + final; c2: epoch 1
    (asha,) = scheduler._groups.values()
    rungs = {milestone: sorted(rec.values()) for milestone, rec in asha._brackets[0]._rungs}
    assert rungs[1] == pytest.approx(sorted([0.2 * 1.1, 0.1 * 1.1]))  # sweep_stubs.score
    assert rungs[3] == pytest.approx([0.2 * 1.3])
