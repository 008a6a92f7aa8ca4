"""Trial packs in the sweep: the space setting, successive halving, member trial directories,
and a packed sweep that reports what the unpacked one reports."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pyarrow import fs as pafs

from jola_ray.errors import ConfigError
from jola_ray.sweep.packs import MemberRecords, SuccessiveHalving
from jola_ray.sweep.space import members, parse_space

BASE = {
    "name": "p",
    "tasks": ["demo_parity"],
    "seeds": [42],
    "models": ["tiny-llama"],
    "methods": ["jola", "lofit", "zero_shot"],
    "configs": [{"name": f"c{i}", "lr": 10.0**-i} for i in range(1, 6)],
    "fixed": {"epochs": 4},
    "resources": {"cpu": 1, "gpu": 0},
}


def _space(**over):
    return parse_space({**BASE, **over}, "inline")


def test_pack_setting_makes_one_trial_per_pack_and_keeps_every_configuration():
    plain, packed = _space(), _space(pack=True)
    assert len(plain.trials()) == 11 and len(packed.trials()) == 3  # jola, lofit, zero-shot
    by_method = {t["method"]: t for t in packed.trials()}
    assert "pack" not in by_method["zero_shot"]  # nothing to train: runs unpacked
    assert [h["config_name"] for h in by_method["jola"]["pack"]] == [f"c{i}" for i in range(1, 6)]
    # the members are exactly the unpacked trials
    key = lambda t: json.dumps(t, sort_keys=True)  # noqa: E731
    assert sorted(map(key, packed.member_trials())) == sorted(map(key, plain.trials()))
    assert packed.fingerprint() != plain.fingerprint()  # a packed resume of a plain run: refused

    two = _space(pack=2)  # at most two configurations per pack: 3 packs per trained group
    sizes = sorted(len(t["pack"]) for t in two.trials() if t["method"] == "jola")
    assert sizes == [1, 2, 2]
    assert members(two.trials()[0])[0]["hp"]["config_name"] == "c1"
    with pytest.raises(ConfigError, match="pack: 'yes' must be true, false or a pack size"):
        _space(pack="yes")


def test_preference_tasks_and_unpackable_methods_run_unpacked():
    space = _space(tasks=["truthfulqa"], methods=["lofit"], pack=True)
    assert all("pack" not in t for t in space.trials())  # DPO: TRL's preference loss
    from jola_ray.methods import registry

    assert registry.get("jola").packs and registry.get("lofit").packs
    assert not registry.get("lora").packs and not registry.get("zero_shot").packs


def test_jola_at_other_sites_runs_unpacked_and_heads_pack_beside_it():
    """A group of jola.site ffn stays single trials; the heads group packs; within one group,
    configurations at another site leave the pack (said in the dry-run text)."""
    from jola_ray.sweep.space import describe, unpacked_reason

    space = _space(methods=["jola"], axes={"jola.site": ["heads", "ffn"]}, pack=True)
    by_site = {}
    for t in space.trials():
        by_site.setdefault(t["jola.site"], []).append(t)
    assert [len(t["pack"]) for t in by_site["heads"]] == [5]
    assert len(by_site["ffn"]) == 5 and all("pack" not in t for t in by_site["ffn"])
    assert "site 'ffn' runs unpacked" in unpacked_reason(by_site["ffn"][0])
    assert "unpacked: 5 trials: jola.site 'ffn' runs unpacked" in describe(space)

    configs = [dict(c) for c in BASE["configs"]]
    configs[1]["jola.site"] = "heads+residual"
    mixed = _space(methods=["jola"], configs=configs, pack=True)
    trials = mixed.trials()
    assert [h["config_name"] for h in trials[0]["pack"]] == ["c1", "c3", "c4", "c5"]
    assert [t["hp"]["config_name"] for t in trials[1:]] == ["c2"]
    key = lambda t: json.dumps(t, sort_keys=True)  # noqa: E731
    plain = _space(methods=["jola"], configs=configs)
    assert sorted(map(key, mixed.member_trials())) == sorted(map(key, plain.trials()))


def _shipped():
    from jola_ray.sweep.space import shipped_spaces

    return shipped_spaces()


@pytest.mark.parametrize("name", _shipped())
def test_every_shipped_space_packs_only_head_edits(name, capsys):
    """``jola-ray sweep NAME --pack`` over every shipped space: JoLA/LoFiT groups of several
    configurations pack, every baseline (BitFit, RED, LoReFT, RepE, ITI, LoRA) and zero-shot
    stays one trial per configuration, no configuration is lost, and the dry run says so."""
    from jola_ray.cli import main
    from jola_ray.sweep.space import load_space

    plain, packed = load_space(name), load_space(name, pack=True)
    key = lambda t: json.dumps(t, sort_keys=True)  # noqa: E731
    assert sorted(map(key, packed.member_trials())) == sorted(map(key, plain.trials()))
    kinds = {}
    for t in packed.trials():
        site = t.get("jola.site", "heads")
        kinds.setdefault((t["method"], site), set()).add("pack" in t)
    for (method, site), packs in kinds.items():
        several = len(plain.configs.get(method, ())) > 1
        if method in ("jola", "lofit") and site == "heads" and several:
            assert True in packs, (name, method)
        elif method not in ("jola", "lofit"):
            assert packs == {False}, (name, method, site)
    assert main(["sweep", name, "--pack", "--dry-run"]) == 0
    out = capsys.readouterr().out
    trials, configurations = len(packed.trials()), len(plain.trials())
    if trials < configurations:
        assert f"grid size: {trials} trials ({configurations} configurations; packs of" in out
    else:  # nothing packs (a single configuration per group, or only baselines)
        assert f"grid size: {trials} trials" in out


def test_pack_flag_packs_any_space_file_as_the_key_does(tmp_path, capsys):
    """``jola-ray sweep SPACE --pack [N]`` is the space's ``pack`` key set from the command line:
    the same trials as the key in the file, for a space file that says nothing of packs."""
    import yaml

    from jola_ray.cli import main
    from jola_ray.sweep.space import load_space

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(BASE))
    key = lambda t: json.dumps(t, sort_keys=True)  # noqa: E731
    for flag, value in ((True, True), (2, 2), (False, False)):
        got = load_space(path, check_registry=False, pack=flag)
        want = parse_space({**BASE, "pack": value}, str(path), check_registry=False)
        assert list(map(key, got.trials())) == list(map(key, want.trials()))
    assert len(load_space(path, check_registry=False).trials()) == 11  # the file's: unpacked

    assert main(["sweep", str(path), "--pack", "--dry-run"]) == 0
    assert "grid size: 3 trials (11 configurations; packs of up to 5)" in capsys.readouterr().out
    assert main(["sweep", str(path), "--pack", "2", "--dry-run"]) == 0
    assert "packs of up to 2" in capsys.readouterr().out
    assert main(["sweep", str(path), "--pack", "0", "--dry-run"]) == 0
    assert "grid size: 11 trials" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["sweep", str(path), "--pack", "-3", "--dry-run"])
    assert info.value.code == 2
    assert "--pack: '-3': give a pack size" in capsys.readouterr().err


def _asha_keeps(values, rf):
    """ASHA's cut when every value of the rung is known: continue if >= the (1 - 1/rf)
    percentile of the recorded values (numpy's, as Ray's AsyncHyperBandScheduler)."""
    cutoff = np.nanpercentile(values, (1 - 1 / rf) * 100)
    return {i for i, v in enumerate(values) if v >= cutoff}


@pytest.mark.parametrize("values", [[40.0, 55.5, 61.0, 48.0, 70.0], [1.0, 2.0, 3.0], [5.0, 5.0]])
def test_successive_halving_cuts_where_asha_would_with_all_values(values):
    sh = SuccessiveHalving("dev_score", "max", grace_period=2, reduction_factor=3, max_t=20)
    assert sh.rungs == {2, 6, 18}
    rows = {k: {"dev_score": v} for k, v in enumerate(values)}
    stopped = sh(2, rows)
    assert set(rows) - stopped == _asha_keeps(values, 3)
    assert sh(3, rows) == set()  # not a rung
    assert sh(20, rows) == set()  # max_t: never stopped
    # min mode: the lowest values survive; a missing value counts as the worst
    low = SuccessiveHalving("dev_loss", "min", grace_period=1, reduction_factor=2, max_t=4)
    out = low(1, {0: {"dev_loss": 1.0}, 1: {"dev_loss": 3.0}, 2: {"dev_loss": math.nan}})
    assert out == {2}  # 3.0 is the median: kept, as ASHA keeps it


def test_member_records_replace_retrained_epochs_and_copy_the_final_files(tmp_path):
    fs = pafs.LocalFileSystem()
    rec = MemberRecords(fs, str(tmp_path / "m"), {"task": "t"}, "abc_0")
    for e in (1, 2):
        rec.write({"epoch": e, "run_status": "running", "dev_score": e})
    again = MemberRecords(fs, str(tmp_path / "m"), {"task": "t"}, "abc_0")  # a resumed pack
    again.write({"epoch": 2, "run_status": "running", "dev_score": 22})  # epoch 2 trained again
    final_dir = tmp_path / "final"
    final_dir.mkdir()
    (final_dir / "metrics.json").write_text("{}")
    again.write({"epoch": 2, "run_status": "finished", "cost_wall_s": 1.5})
    again.finish(str(final_dir))
    rows = [json.loads(x) for x in (tmp_path / "m" / "result.json").read_text().splitlines()]
    assert [(r["epoch"], r["run_status"]) for r in rows] == [
        (1, "running"),
        (2, "running"),
        (2, "finished"),
    ]
    assert rows[1]["dev_score"] == 22 and rows[2]["time_total_s"] == 1.5
    assert (tmp_path / "m" / "checkpoint_000000" / "metrics.json").is_file()
    assert json.loads((tmp_path / "m" / "params.json").read_text()) == {"task": "t"}


@pytest.mark.ray
@pytest.mark.slow
def test_a_packed_sweep_reports_what_the_unpacked_sweep_reports(ray_cluster, tmp_path):
    """FIFO (no pruning): every configuration's rows and test scores, and the selection, are
    the same packed and unpacked. Under ASHA they may differ by design: unpacked ASHA decides
    each trial with the rung values that arrived before it (order-dependent), the pack with
    all of them (``SuccessiveHalving``)."""
    from analysis.load import load_experiment
    from analysis.select import select_configs
    from jola_ray.sweep.runner import run_sweep

    raw = {
        **BASE,
        "methods": ["jola"],
        "configs": [
            {"name": "a", "lr": 5e-3},
            {"name": "b", "lr": 3e-2},
            {"name": "c", "lr": 1e-1},
        ],
        "fixed": {"epochs": 2, "train_size": 8, "dev_size": 8, "test_size": 8, "batch_size": 4},
        "scheduler": {"type": "fifo"},
    }
    tables = {}
    for name, extra in (("plain", {}), ("packed", {"pack": True})):
        space = parse_space({**raw, **extra, "name": name}, "inline")
        outcome = run_sweep(space, storage_path=str(tmp_path), say=lambda s: None)
        assert outcome.exit_code == 0
        trials, epochs = load_experiment(str(tmp_path / name))
        tables[name] = (trials.sort_values("config_name").reset_index(drop=True), epochs)
    plain, packed = tables["plain"][0], tables["packed"][0]
    assert list(packed["config_name"]) == ["a", "b", "c"]
    assert list(packed["status"]) == ["finished"] * 3
    for col in ("test_score", "best_dev_score", "best_epoch", "trainable_params"):
        np.testing.assert_allclose(packed[col], plain[col], rtol=1e-5, err_msg=col)
    assert (packed["pack_size"] == 3).all() and plain["pack_size"].isna().all()
    pick = lambda t: select_configs(t)[["task", "seed", "method", "config_name"]]  # noqa: E731
    assert pick(packed).equals(pick(plain))
    ep_plain, ep_packed = (tables[n][1].sort_values(["config_name", "epoch"]) for n in tables)
    np.testing.assert_allclose(
        ep_packed["train_loss"].to_numpy(), ep_plain["train_loss"].to_numpy(), rtol=1e-5
    )

    # A pack whose worker dies after its first checkpoint is retried from it (max_failures)
    # and ends with the same results as the uninterrupted pack.
    space = parse_space({**raw, "pack": True, "name": "retried", "max_failures": 1}, "inline")
    outcome = run_sweep(
        space,
        storage_path=str(tmp_path),
        say=lambda s: None,
        run_pack_fn="sweep_stubs.run_pack_failing_once",
    )
    assert outcome.exit_code == 0 and set(outcome.statuses.values()) == {"finished"}
    assert len(list((tmp_path / "retried").glob("*/failed_once"))) == 1  # it did die once
    retried, retried_epochs = load_experiment(str(tmp_path / "retried"))
    retried = retried.sort_values("config_name").reset_index(drop=True)
    assert list(retried["status"]) == ["finished"] * 3 and retried["error"].isna().all()
    for col in ("test_score", "best_dev_score", "best_epoch"):
        np.testing.assert_allclose(retried[col], packed[col], rtol=1e-5, err_msg=col)
    assert list(retried_epochs.groupby("config_name")["epoch"].max()) == [2, 2, 2]

    # A pack whose newest checkpoint is damaged falls back to the one before (as a single
    # trial does), says so, and still ends with the uninterrupted pack's results.
    raw3 = {**raw, "fixed": {**raw["fixed"], "epochs": 3}}
    space = parse_space({**raw3, "pack": True, "name": "whole3"}, "inline")
    assert run_sweep(space, storage_path=str(tmp_path), say=lambda s: None).exit_code == 0
    whole, _ = load_experiment(str(tmp_path / "whole3"))
    whole = whole.sort_values("config_name").reset_index(drop=True)
    space = parse_space({**raw3, "pack": True, "name": "damaged", "max_failures": 1}, "inline")
    outcome = run_sweep(
        space,
        storage_path=str(tmp_path),
        say=lambda s: None,
        run_pack_fn="sweep_stubs.run_pack_damaged_once",
    )
    assert outcome.exit_code == 0 and set(outcome.statuses.values()) == {"finished"}
    assert len(list((tmp_path / "damaged").glob("*/damaged_once"))) == 1
    damaged, _ = load_experiment(str(tmp_path / "damaged"))
    damaged = damaged.sort_values("config_name").reset_index(drop=True)
    for col in ("test_score", "best_dev_score", "best_epoch"):
        np.testing.assert_allclose(damaged[col], whole[col], rtol=1e-5, err_msg=col)
    rows = [
        json.loads(line)
        for p in (tmp_path / "damaged").glob("*/result.json")
        for line in p.read_text().splitlines()
        if line.strip()
    ]
    warned = [r["warning"] for r in rows if r.get("warning")]
    assert warned and "pack_state.json" in warned[0] and "older" in warned[0]
