"""The paper's analyses in the report, on hand-built experiment directories.

Every expected value is computed here from the numbers written into the trial files (select the
best dev score per seed, then mean and sample std with ``statistics``), independently of
``analysis``. The experiments hold a pruned trial and a seed with no finished trial.
"""

from __future__ import annotations

import math
import os
import statistics

import pandas as pd
import pytest

from analysis.load import load_experiments
from analysis.report import build_report, render_report
from analysis.select import select_configs
from analysis.studies import gate_dynamics, recognise, schedule_spread, sparsity_frame, study_tables

SEEDS = (1, 2, 3)
TASKS = ("boolq", "piqa")
VARIANTS = ("two", "shared", "none")
CONFIGS = ("c0", "c1")
# boolq/shared/seed 3: c0 errored, c1 pruned -> a seed with no selection; piqa/two/2/c1 pruned.
MISSING = ("shared", "boolq", 3)
PRUNED = {("shared", "boolq", 3, "c1"), ("two", "piqa", 2, "c1")}


def _dev(variant, task, seed, cfg):
    """Best dev score of a trial: a pattern under which the winning config differs by seed."""
    v, t, c = VARIANTS.index(variant), TASKS.index(task), CONFIGS.index(cfg)
    return 60.0 + 5 * v + 2 * t + (seed * (1 + c)) % 4 + 0.5 * c


def _test(variant, task, seed, cfg):
    return _dev(variant, task, seed, cfg) - 3.0 + 0.25 * seed


def _gates(variant, seed, cfg, epoch):
    """Open-gate fractions recorded at one epoch: per part, overall and per layer (2 layers)."""
    if variant == "none":
        return {
            f"open_gate_fraction_{p}{s}": 1.0 for p in ("add", "mul") for s in ("", "_l0", "_l1")
        }
    add0, add1 = 1.0 - 0.1 * epoch, 1.0 - 0.2 * epoch * (1 + seed % 2)
    c = CONFIGS.index(cfg)
    mul0, mul1 = (add0, add1) if variant == "shared" else (1.0, 1.0 - 0.05 * epoch * (1 + c))
    return {
        "open_gate_fraction_add": (add0 + add1) / 2,
        "open_gate_fraction_add_l0": add0,
        "open_gate_fraction_add_l1": add1,
        "open_gate_fraction_mul": (mul0 + mul1) / 2,
        "open_gate_fraction_mul_l0": mul0,
        "open_gate_fraction_mul_l1": mul1,
    }


def _selected_cfg(variant, task, seed):
    """The configuration with the best dev score among the finished ones (None: none)."""
    if (variant, task, seed) == MISSING:
        return None
    finished = [c for c in CONFIGS if (variant, task, seed, c) not in PRUNED]
    return max(finished, key=lambda c: _dev(variant, task, seed, c))


def _selected_tests(variant, task):
    return [
        _test(variant, task, s, _selected_cfg(variant, task, s))
        for s in SEEDS
        if _selected_cfg(variant, task, s)
    ]


def _fmt(values, expected=3):
    text = f"{statistics.mean(values):.1f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.1f}"
    if len(values) < expected:
        return text + f" ({len(values)}/{expected})"
    return text + (f" ({len(values)})" if len(values) > 1 else "")


@pytest.fixture(scope="module")
def ablation(tmp_path_factory, fake):
    """``jola.gates`` in {two, shared, none} on boolq and piqa, 3 seeds, 2 configs; zero-shot
    run once per variant (an axis crosses every method)."""
    root = str(tmp_path_factory.mktemp("gate_ablation"))
    i = 0
    for variant in VARIANTS:
        for task in TASKS:
            for seed in SEEDS:
                for cfg in CONFIGS:
                    p = fake.params(task, seed, "jola", cfg)
                    p["jola.gates"] = variant  # a sweep axis sits at the top of params.json
                    error = None
                    best = _dev(variant, task, seed, cfg)
                    if (variant, task, seed) == MISSING and cfg == "c0":
                        rows, error = fake.epoch_rows([40.0]), "RuntimeError: boom\n"
                    elif (variant, task, seed, cfg) in PRUNED:
                        rows = fake.epoch_rows([best - 10])
                    else:
                        test = {"accuracy": _test(variant, task, seed, cfg)}
                        rows = fake.finished_rows([best - 4, best, best - 1], test)
                    for row in rows:
                        row.update(_gates(variant, seed, cfg, row["epoch"]))
                    fake.write_trial(root, f"t_{i:04d}", p, rows, error=error)
                    i += 1
                zp = fake.params(task, seed, "zero_shot", None, epochs=None)
                zp["jola.gates"] = variant
                score = 50.0 + seed + TASKS.index(task)
                zs = [
                    {
                        "epoch": 0,
                        "test_score": score,
                        "test_accuracy": score,
                        "run_status": "finished",
                    }
                ]
                fake.write_trial(root, f"t_{i:04d}", zp, zs)
                i += 1
    trials, epochs = load_experiments([root])
    return root, trials, epochs, select_configs(trials)


def test_gate_ablation_table_rows_per_variant(ablation):
    _, trials, epochs, selected = ablation
    assert [s.axis for s in recognise(trials)] == ["jola.gates"]
    tables = [t for t in study_tables(selected, trials, epochs) if t.slug == "gate_ablation"]
    [table] = tables
    assert table.header == ["Method", "gates", "BoolQ", "PIQA", "Avg"]
    texts = [[c.text for c in row] for row in table.rows]
    # zero-shot: one row, its per-seed score averaged over the repeated variant runs
    assert texts[0] == [
        "Zero-shot",
        "–",
        _fmt([51.0, 52.0, 53.0]),
        _fmt([52.0, 53.0, 54.0]),
        "52.5",
    ]
    for row, variant in zip(texts[1:], VARIANTS, strict=True):
        boolq, piqa = _selected_tests(variant, "boolq"), _selected_tests(variant, "piqa")
        avg = (statistics.mean(boolq) + statistics.mean(piqa)) / 2
        assert row == ["JoLA", variant, _fmt(boolq), _fmt(piqa), f"{avg:.1f}"]
    assert texts[2][2].endswith("(2/3)")  # the seed whose trials were pruned or errored
    best_avg = max(range(1, 4), key=lambda r: table.rows[r][4].mean)
    assert table.rows[best_avg][4].best and table.rows[best_avg][1].text == "none"


def test_gate_dynamics_per_part_and_layer(ablation):
    _, trials, epochs, selected = ablation
    dyn = gate_dynamics(selected, epochs, trials).set_index(
        ["jola.gates", "task", "part", "layer", "epoch"]
    )
    assert set(dyn.reset_index()["method"]) == {"jola"}  # zero-shot records no gates
    for variant, task, part, layer, epoch in [
        ("two", "piqa", "mul", 1, 2),
        ("two", "boolq", "add", -1, 3),
        ("shared", "boolq", "mul", 0, 1),
    ]:
        key = f"open_gate_fraction_{part}" + ("" if layer < 0 else f"_l{layer}")
        values = [
            _gates(variant, s, _selected_cfg(variant, task, s), epoch)[key]
            for s in SEEDS
            if _selected_cfg(variant, task, s)
        ]
        row = dyn.loc[(variant, task, part, layer, epoch)]
        assert math.isclose(row.open_mean, statistics.mean(values))
        assert math.isclose(row.open_std, statistics.stdev(values))
        assert row.n_seeds == len(values)
    # a pruned trial (one epoch) is not selected: epoch 1 of piqa/two averages 3 selected seeds
    assert dyn.loc[("two", "piqa", "add", -1, 1)].n_seeds == 3


def test_sparsity_at_the_selected_epoch(ablation):
    _, trials, epochs, selected = ablation
    per_trial = sparsity_frame(selected, epochs)
    row = per_trial[
        (per_trial["jola.gates"] == "two") & (per_trial.task == "boolq") & (per_trial.seed == 2)
    ].iloc[0]
    cfg = _selected_cfg("two", "boolq", 2)
    assert math.isclose(
        row.closed_add, 100 * (1 - _gates("two", 2, cfg, 2)["open_gate_fraction_add"])
    )
    tables = {t.slug: t for t in study_tables(selected, trials, epochs)}
    table = tables["sparsity_jola_tiny-llama_shared"]
    assert table.header == [
        "Task",
        "Closed additive gates (%)",
        "Closed multiplicative gates (%)",
        "Heads kept",
    ]
    closed = [
        100
        * (
            1
            - _gates("shared", s, _selected_cfg("shared", "boolq", s), 2)["open_gate_fraction_add"]
        )
        for s in (1, 2)
    ]
    assert [c.text for c in table.rows[0]] == [
        "BoolQ",
        _fmt(closed),
        _fmt(closed),
        "6.0 ± 0.0 (2/3)",
    ]
    none = tables["sparsity_jola_tiny-llama_none"]
    assert none.rows[1][1].text == "0.0 ± 0.0 (3)"  # no gates: the edit is always on


def test_report_renders_the_ablation_and_its_figures(ablation, tmp_path):
    root, *_ = ablation
    out = tmp_path / "rep"
    text = render_report([root], out_dir=str(out))
    assert "**Gate ablation: test score by gates**" in text
    assert "Gate sparsity at the selected epoch: JoLA (model=tiny-llama, jola.gates=none)" in text
    for stem in ("gate_ablation", "gate_dynamics_jola_tiny-llama_boolq_two"):
        assert os.path.getsize(out / "plots" / f"{stem}.png") > 5000
    assert os.path.exists(out / "tables" / "gate_ablation.tex")
    assert os.path.exists(out / "gate_dynamics.csv") and os.path.exists(out / "sparsity.csv")


def test_recognised_from_varying_settings_not_the_name(tmp_path, fake):
    """A directory named like an ablation whose setting does not vary holds no ablation; an
    unknown setting that varies is an ablation over its values."""
    root = tmp_path / "gate_ablation"
    root.mkdir()
    for seed in (1, 2):
        for std in (0.001, 0.01):
            p = fake.params("boolq", seed, "jola", "c0")
            p["jola.gates"] = "two"
            p["jola.init_std"] = std
            fake.write_trial(
                str(root),
                f"t{seed}_{std}",
                p,
                fake.finished_rows([60], {"accuracy": 60 + seed + 100 * std}),
            )
    trials, epochs = load_experiments([str(root)])
    assert [s.title for s in recognise(trials)] == ["Ablation over jola.init_std"]
    [table] = [
        t
        for t in study_tables(select_configs(trials), trials, epochs)
        if t.slug.startswith("ablation")
    ]
    assert [c.text for c in table.rows[1]] == ["JoLA", "0.01", _fmt([62.0, 63.0], 2)]
    assert "Gate ablation" not in render_report(
        [str(root)], out_dir=str(tmp_path / "r"), plots=False
    )


@pytest.fixture(scope="module")
def schedules(tmp_path_factory, fake):
    """``lr_schedule`` in {linear, exponential} as an axis, 3 configs, 3 seeds, one pruned."""
    root = str(tmp_path_factory.mktemp("sched"))
    tests, devs = {}, {}
    for k, sched in enumerate(("linear", "exponential")):
        for seed in SEEDS:
            for c, cfg in enumerate(("c0", "c1", "c2")):
                devs[sched, seed, cfg] = 60.0 + ((seed + 2 * c) % 3) * (3 - 2 * k)
                tests[sched, seed, cfg] = devs[sched, seed, cfg] - 1 + (seed % 2) * (2 - k)
                p = fake.params("boolq", seed, "jola", cfg)
                p["lr_schedule"] = sched
                if (sched, seed, cfg) == ("linear", 2, "c2"):
                    rows = fake.epoch_rows([10.0])
                    del tests[sched, seed, cfg]
                else:
                    rows = fake.finished_rows(
                        [devs[sched, seed, cfg]], {"accuracy": tests[sched, seed, cfg]}
                    )
                fake.write_trial(root, f"s_{sched}_{seed}_{cfg}", p, rows)
    return root, tests, devs


def test_schedule_stability_across_seeds_and_configs(schedules):
    root, tests, devs = schedules
    trials, epochs = load_experiments([root])
    selected = select_configs(trials)
    spread = schedule_spread(selected, trials, "lr_schedule").set_index("lr_schedule")
    for sched in ("linear", "exponential"):
        chosen = []
        for seed in SEEDS:
            cfgs = [c for c in ("c0", "c1", "c2") if (sched, seed, c) in tests]
            best = max(cfgs, key=lambda c: (devs[sched, seed, c], -int(c[1])))
            chosen.append(tests[sched, seed, best])
        every = [v for (s, _, _), v in tests.items() if s == sched]
        row = spread.loc[sched]
        assert math.isclose(row.seed_std, statistics.stdev(chosen))
        assert math.isclose(row.all_std, statistics.stdev(every))
        assert (row.all_n, row.all_total) == (len(every), 9)
    tables = {t.slug: t for t in study_tables(selected, trials, epochs)}
    stab = tables["schedule_stability"]
    assert stab.header == ["Method", "schedule", "BoolQ std seeds", "BoolQ std seeds x configs"]
    assert [r[1].text for r in stab.rows] == ["linear", "exponential"]  # the paper's order
    assert stab.rows[0][3].text.endswith("(8/9)")  # the pruned trial is counted, not used
    assert "schedules" in tables  # the scores table as well


def test_head_count_curve(tmp_path, fake):
    root = tmp_path / "heads"
    root.mkdir()
    scores = {(2, 1): 50.0, (2, 2): 54.0, (8, 1): 60.0, (8, 2): 61.0}
    for (k, seed), acc in scores.items():
        p = fake.params("boolq", seed, "lofit", "c0")
        p["lofit.top_k"] = k
        fake.write_trial(str(root), f"h{k}_{seed}", p, fake.finished_rows([50], {"accuracy": acc}))
    p = fake.params("boolq", 3, "lofit", "c0")
    p["lofit.top_k"] = 8
    fake.write_trial(str(root), "h8_3", p, fake.epoch_rows([10]))  # pruned: seed 3 missing
    rep = build_report([str(root)], out_dir=str(tmp_path / "rep"))
    [table] = [t for t in rep["tables"] if t.slug.startswith("head_count")]
    assert table.title == "Head-count analysis (task=boolq)"
    assert table.header == ["Method", "lofit.top_k=2", "lofit.top_k=8"]
    assert [c.text for c in table.rows[0]] == ["LoFiT", _fmt([50.0, 54.0], 2), _fmt([60.0, 61.0])]
    assert os.path.getsize(tmp_path / "rep" / "plots" / "head_count_boolq.png") > 5000


def test_model_size_curve_orders_models_by_size(tmp_path, fake):
    """Models sort by the size in their names; zero-shot has its own value per model."""
    root = tmp_path / "models"
    root.mkdir()
    scores = {("org/M-8B", 1): 70.0, ("org/M-8B", 2): 72.0, ("org/M-1B", 1): 50.0}
    for (model, seed), acc in scores.items():
        p = fake.params("boolq", seed, "jola", "c0", model=model)
        fake.write_trial(
            str(root), f"j{model[-2:]}{seed}", p, fake.finished_rows([1], {"accuracy": acc})
        )
        z = fake.params("boolq", seed, "zero_shot", None, epochs=None, model=model)
        zs = [{"epoch": 0, "test_score": acc - 20, "run_status": "finished"}]
        fake.write_trial(str(root), f"z{model[-2:]}{seed}", z, zs)
    p = fake.params("boolq", 2, "jola", "c0", model="org/M-1B")
    fake.write_trial(str(root), "j1B2", p, fake.epoch_rows([1]))  # pruned: a missing seed
    rep = build_report([str(root)], out_dir=str(tmp_path / "rep"))
    assert [s.slug for s in recognise(rep["trials"])] == ["model_size"]
    [table] = [t for t in rep["tables"] if t.slug.startswith("model_size")]
    assert table.header == ["Method", "model=org/M-1B", "model=org/M-8B"]
    texts = [[c.text for c in row] for row in table.rows]
    assert texts == [  # seed 2 ran on the 1B (a pruned trial), so it is expected of every method
        ["Zero-shot", "30.0 (1/2)", _fmt([50.0, 52.0], 2)],
        ["JoLA", "50.0 (1/2)", _fmt([70.0, 72.0], 2)],
    ]
    assert os.path.getsize(tmp_path / "rep" / "plots" / "model_size_boolq.png") > 5000


def test_separate_runs_of_one_setting_are_an_ablation(tmp_path, fake):
    """Three experiments, each with a fixed jola.gates, loaded together: a gate ablation; a
    setting that varies between one experiment's configurations is not an axis."""
    dirs = []
    for k, gates in enumerate(VARIANTS):
        root = tmp_path / gates
        root.mkdir()
        dirs.append(str(root))
        for seed in (1, 2):
            p = fake.params("boolq", seed, "jola", "c0", **{"jola.gates": gates})
            acc = 60.0 + 5 * k + seed
            fake.write_trial(
                str(root), f"{gates}{seed}", p, fake.finished_rows([1], {"accuracy": acc})
            )
    trials, epochs = load_experiments(dirs)
    assert [s.slug for s in recognise(trials)] == ["gate_ablation"]
    [table] = [
        t for t in study_tables(select_configs(trials), trials, epochs) if t.slug == "gate_ablation"
    ]
    assert [[c.text for c in r][1:] for r in table.rows] == [
        [v, _fmt([61.0 + 5 * k, 62.0 + 5 * k], 2)] for k, v in enumerate(VARIANTS)
    ]
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for cfg, sched in (("c0", "cosine"), ("c1", "exponential")):
        p = fake.params("boolq", 1, "jola", cfg, lr_schedule=sched)
        fake.write_trial(str(mixed), cfg, p, fake.finished_rows([1], {"accuracy": 50.0}))
    assert recognise(load_experiments([str(mixed)])[0]) == []


def test_an_ablation_without_any_finished_trial_still_reports(tmp_path, fake):
    root = tmp_path / "none_finished"
    root.mkdir()
    for gates in ("two", "none"):
        p = fake.params("boolq", 1, "jola", "c0", **{"jola.gates": gates})
        p["jola.gates"] = gates
        fake.write_trial(str(root), gates, p, fake.epoch_rows([10.0]))  # pruned
    rep = build_report([str(root)], out_dir=str(tmp_path / "rep"))
    [table] = [t for t in rep["tables"] if t.slug == "gate_ablation"]
    assert [c.text for c in table.rows[0]] == ["JoLA", "two", "– (0/1)"]


def test_data_size_values_in_numeric_order(tmp_path, fake):
    """16 < 32 < 128 as numbers (numpy scalars from the table), not as text."""
    root = tmp_path / "sizes"
    root.mkdir()
    for size in (128, 16, 32):
        p = fake.params("boolq", 1, "jola", "c0")
        p["train_size"] = size
        fake.write_trial(str(root), f"s{size}", p, fake.finished_rows([1], {"accuracy": size / 2}))
    rep = build_report([str(root)], out_dir=str(tmp_path / "rep"), plots=False)
    [table] = [t for t in rep["tables"] if t.slug.startswith("data_size")]
    assert table.header == ["Method", "train_size=16", "train_size=32", "train_size=128"]
    assert [c.text for c in table.rows[0]] == ["JoLA", "8.0", "16.0", "64.0"]


def test_sparsity_leaves_out_methods_without_gates():
    """A method that records no gate statistic (LoRA, BitFit, ...) gets no sparsity table."""
    from analysis.studies import sparsity_tables

    rows = [
        ("jola", "t1", 1, 10.0, 20.0, 7.0),
        ("jola", "t1", 2, 30.0, 40.0, 8.0),
        ("lora", "t1", 1, math.nan, math.nan, 0.0),
        ("lora", "t1", 2, math.nan, math.nan, 0.0),
    ]
    per_trial = pd.DataFrame(
        rows, columns=["method", "task", "seed", "closed_add", "closed_mul", "num_selected_heads"]
    ).assign(model="m")
    selected = per_trial[["method", "model", "task", "seed"]]
    trials = selected.assign(status="finished")
    tables = sparsity_tables(per_trial, selected, trials)
    assert [t.slug for t in tables] == ["sparsity_jola_m"]
    assert tables[0].rows[0][1].mean == 20.0  # mean of 10 and 30
