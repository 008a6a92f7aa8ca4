"""Render harness result files (JSON) as Markdown; merge several files of one machine.

    python -m benchmarks.report benchmarks/results/h100-a.json benchmarks/results/h100-b.json \
        --merge-out benchmarks/results/h100.json --md benchmarks/results/h100.md

Merging takes the union of each shape's keys (later files win) and the first file's meta, with
every file's command listed, so a GPU session may split the harness over several calls.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Targets of the issue (one H100/H200, batch 8 x 256, bf16).
TARGET_OVER_FLOOR = {"1b": 1.25, "8b": 1.10}
TARGET_EVAL_SPEEDUP = 30.0
TARGET_PACKING_GAIN = 1.4
TARGET_SETUP_FRACTION = 0.15


def merge(results: list[dict]) -> dict:
    """One result from several files of the same machine (shape keys united, later wins)."""
    if len(results) == 1:
        return results[0]
    merged = {"meta": dict(results[0]["meta"]), "shapes": {}}
    merged["meta"]["commands"] = [r["meta"].get("command") for r in results]
    for r in results:
        for shape, values in r.get("shapes", {}).items():
            merged["shapes"].setdefault(shape, {}).update(values)
        if "sweep" in r:
            merged["sweep"] = r["sweep"]
    return merged


def _f(value, digits: int = 1, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}{suffix}"
    return str(value)


def _x(value) -> str:
    return _f(value, 2, "x")


def _check(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def _train_table(shapes: dict) -> list[str]:
    names = [n for n, s in shapes.items() if "floor_ms" in s]
    if not names:
        return []
    variants: list[str] = []
    for n in names:
        for v in shapes[n].get("jola_variants", {}):
            if v not in variants:
                variants.append(v)
    lines = [
        "### Training step (ms per step, mean after warm-up; ratio to the floor)",
        "",
        "| what | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]

    def row(label, fn):
        lines.append(f"| {label} | " + " | ".join(fn(shapes[n]) for n in names) + " |")

    row("floor: frozen forward + backward to the input embeddings", lambda s: _f(s["floor_ms"]))
    for v in variants:

        def cell(s, v=v):
            r = s.get("jola_variants", {}).get(v, {})
            if "error" in r:
                return "error"
            if "ms" not in r:
                return "–"
            return f"{_f(r['ms'])} ({_x(r['over_floor'])})"

        row(f"JoLA, `{v}`", cell)
    row(
        "LoFiT stage 1 (scale every head)",
        lambda s: f"{_f(s['lofit_ms'])} ({_x(s['lofit_over_floor'])})",
    )
    row("peak memory, floor (GiB)", lambda s: _f(s.get("floor_peak_gb"), 2))
    row("peak memory, JoLA plain (GiB)", lambda s: _f(s.get("peak_gb"), 2))
    row(
        "fastest JoLA variant",
        lambda s: f"`{s.get('jola_best_variant')}` {_x(s.get('jola_best_over_floor'))}",
    )
    errors = {
        f"{n}/{v}": r["error"]
        for n in names
        for v, r in shapes[n].get("jola_variants", {}).items()
        if "error" in r
    }
    lines.append("")
    for where, msg in errors.items():
        lines.append(f"- `{where}` failed: {msg.splitlines()[0][:200]}")
    if errors:
        lines.append("")
    return lines


def _methods_table(shapes: dict) -> list[str]:
    """Every trained method's step beside the floor (the ``methods`` section)."""
    names = [n for n, s in shapes.items() if "method_steps" in s]
    if not names:
        return []
    methods: list[str] = []
    for n in names:
        for m in shapes[n]["method_steps"]:
            if m not in methods:
                methods.append(m)
    lines = [
        "### Every trained method's step (ms per step; ratio to the floor; trainable params)",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        "| floor | " + " | ".join(_f(shapes[n].get("methods_floor_ms")) for n in names) + " |",
    ]
    for m in methods:
        cells = []
        for n in names:
            res = shapes[n]["method_steps"].get(m, {})
            if "error" in res:
                cells.append("error")
            else:
                cells.append(
                    f"{_f(res.get('ms'))} ({_x(res.get('over_floor'))}, "
                    f"{res.get('trainable_params', 0):,})"
                )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _eval_table(shapes: dict) -> list[str]:
    names = [n for n, s in shapes.items() if "eval_ms_per_example" in s]
    if not names:
        return []
    modes: list[str] = []
    for n in names:
        for m in shapes[n]["eval_ms_per_example"]:
            if m not in modes:
                modes.append(m)
    lines = [
        "### Evaluation (ms per test example through `evaluate`; speed-up over 4-beam batch 1)",
        "",
        "| mode | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for m in modes:
        cells = []
        for n in names:
            ms = shapes[n]["eval_ms_per_example"].get(m)
            speed = shapes[n].get("eval_speedup_vs_beam4_bs1", {}).get(m)
            cells.append(_f(ms, 2) + (f" ({_x(speed)})" if speed else ""))
        lines.append(f"| `{m}` | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _packing_table(shapes: dict) -> list[str]:
    names = [n for n, s in shapes.items() if "trial_steps_per_s" in s]
    if not names:
        return []
    levels = sorted({int(k) for n in names for k in shapes[n]["trial_steps_per_s"]})
    packed = [n for n in names if "pack_trial_steps_per_s" in shapes[n]]
    header = [f"{n}: K processes" for n in names] + [f"{n}: one pack of K" for n in packed]
    lines = [
        "### Several trials on one device (trial-steps per second; gain over 1 process)",
        "",
        "K separate trials (K processes, each its own model) vs one trial pack (K configurations "
        "over one frozen model, K x B rows per step).",
        "",
        "| K | " + " | ".join(header) + " |",
        "|---|" + "---:|" * len(header),
    ]

    def cell(n: str, steps_key: str, gain_key: str, details_key: str, lvl: int) -> str:
        steps = shapes[n][steps_key].get(str(lvl), "absent")
        if steps == "absent":
            return "–"
        if steps is None:
            err = shapes[n].get(details_key, {}).get(str(lvl), {}).get("error", "")
            return "does not run" + (f" ({err[:40]})" if err else "")
        gain = shapes[n].get(gain_key, {}).get(str(lvl))
        return f"{_f(steps, 2)} ({_x(gain)})"

    for lvl in levels:
        cells = [
            cell(n, "trial_steps_per_s", "packing_gain", "packing_details", lvl) for n in names
        ]
        cells += [
            cell(n, "pack_trial_steps_per_s", "pack_gain", "pack_details", lvl) for n in packed
        ]
        lines.append(f"| {lvl} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _pack_runs_table(shapes: dict) -> list[str]:
    names = [n for n, s in shapes.items() if "pack_runs" in s]
    if not names:
        return []
    lines = [
        "### K trials through the trainer: one at a time vs one pack",
        "",
        "The sweep worker's run (TRL trainer, dev pass per epoch, test) for K configurations of "
        "one group, one after the other on the device vs trained together in one pack "
        "(`python -m benchmarks.packing --trainer`): trial throughput gain (alone / packed "
        "seconds) and trial-steps per second.",
        "",
        "| shape | K | alone (s) | one pack (s) | gain | trial-steps/s alone -> packed |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for n in names:
        for k, row in shapes[n]["pack_runs"]["levels"].items():
            if "error" in row:
                lines.append(f"| {n} | {k} | does not run ({row['error'][:60]}) | | | |")
                continue
            lines.append(
                f"| {n} | {k} | {_f(row['alone_s'], 2)} | {_f(row['packed_s'], 2)} | "
                f"{_x(row['gain'])} | {_f(row['alone_trial_steps_per_s'])} -> "
                f"{_f(row['packed_trial_steps_per_s'])} |"
            )
    lines.append("")
    return lines


def _sizes(sizes: dict) -> str:
    if "defaults" in sizes:
        return "`jola-ray train` defaults"
    return "{train}/{dev}/{test}, {epochs} ep".format(**sizes)


def _trial_table(shapes: dict) -> list[str]:
    names = [n for n, s in shapes.items() if "trial_phases_s" in s]
    if not names:
        return []
    lines = [
        "### Whole trial (`jola_ray.train.run` in a fresh process; seconds)",
        "",
        "| phase | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    phases = [
        ("imports_s", "imports"),
        ("model_load_s", "model load"),
        ("data_s", "data"),
        ("training_s", "training"),
        ("dev_loss_s", "dev evaluation: loss"),
        ("dev_score_s", "dev evaluation: score"),
        ("test_s", "test evaluation"),
    ]
    for p, label in phases:
        lines.append(
            f"| {label} | "
            + " | ".join(_f(shapes[n]["trial_phases_s"].get(p), 2) for n in names)
            + " |"
        )
    lines.append(
        "| **total** | " + " | ".join(_f(shapes[n]["trial_wall_s"], 2) for n in names) + " |"
    )
    lines.append(
        "| setup share | "
        + " | ".join(_f(100 * shapes[n]["trial_setup_fraction"], 1, "%") for n in names)
        + " |"
    )
    lines.append(
        "| dev evaluation share | "
        + " | ".join(
            _f(100 * shapes[n]["trial_dev_eval_fraction"], 1, "%")
            if "trial_dev_eval_fraction" in shapes[n]
            else "absent"
            for n in names
        )
        + " |"
    )
    lines.append("| sizes | " + " | ".join(_sizes(shapes[n]["trial_sizes"]) for n in names) + " |")
    lines.append("")
    return lines


def _sweep_lines(sweep: dict | None) -> list[str]:
    if not sweep:
        return []
    if "error" in sweep:
        return ["### Sweep", "", f"Failed: {sweep['error'].splitlines()[0][:300]}", ""]
    g = sweep["sweep_grid"]
    lines = [
        f"### Sweep through `run_sweep` (shape `{sweep['sweep_shape']}`, {g['configs']} configs x "
        f"{g['seeds']} seeds, {g['epochs']} epochs x {g['steps_per_epoch']} steps)",
        "",
        "| trials per device | trials per device-hour | gain |",
        "|---:|---:|---:|",
    ]
    for lvl, per_hour in sweep["sweep_trials_per_device_hour"].items():
        err = sweep["sweep_levels"].get(lvl, {}).get("error")
        gain = sweep["sweep_packing_gain"].get(lvl)
        lines.append(f"| {lvl} | {'error: ' + err[:60] if err else _f(per_hour, 0)} | {_x(gain)} |")
    lines += [
        "",
        f"Ray start: {_f(sweep['ray_init_s'], 1)} s; Ray's fixed overhead per trial (no-op trials, "
        f"one at a time): {_f(sweep['ray_overhead_per_trial_s'], 2)} s.",
        "",
    ]
    return lines


def _targets(shapes: dict) -> list[str]:
    rows = []
    for n in ("1b", "8b"):
        s = shapes.get(n)
        if not s:
            continue
        if "jola_best_over_floor" in s:
            best = s["jola_best_over_floor"]
            rows.append(
                f"| JoLA step / floor, {n} (fastest variant `{s['jola_best_variant']}`) "
                f"| <= {TARGET_OVER_FLOOR[n]:.2f}x | {_x(best)} | {_check(best <= TARGET_OVER_FLOOR[n])} |"
            )
        speed = s.get("eval_speedup_vs_beam4_bs1") or {}
        if speed:
            mode = max(speed, key=speed.get)
            rows.append(
                f"| eval speed-up over 4-beam batch 1, {n} (`{mode}`) | >= {TARGET_EVAL_SPEEDUP:.0f}x "
                f"| {_x(speed[mode])} | {_check(speed[mode] >= TARGET_EVAL_SPEEDUP)} |"
            )
        gains = {k: v for k, v in (s.get("packing_gain") or {}).items() if v and k != "1"}
        if n == "1b" and gains:
            lvl = max(gains, key=gains.get)
            rows.append(
                f"| packing gain, 1b ({lvl} processes) | >= {TARGET_PACKING_GAIN}x | {_x(gains[lvl])} "
                f"| {_check(gains[lvl] >= TARGET_PACKING_GAIN)} |"
            )
        if n == "1b" and "trial_setup_fraction" in s:
            frac = s["trial_setup_fraction"]
            rows.append(
                f"| setup share of a whole trial, 1b | < {100 * TARGET_SETUP_FRACTION:.0f}% "
                f"| {_f(100 * frac, 1, '%')} | {_check(frac < TARGET_SETUP_FRACTION)} |"
            )
    if not rows:
        return []
    return [
        "### Targets",
        "",
        "| target | wanted | measured | met |",
        "|---|---:|---:|---|",
        *rows,
        "",
    ]


def render(results: list[dict]) -> str:
    """Markdown for one machine's result(s)."""
    r = merge(results)
    meta = r["meta"]
    v = meta.get("versions", {})
    commands = meta.get("commands") or [meta.get("command")]
    lines = [
        f"## {meta.get('device_name')} ({meta.get('created')})",
        "",
        f"torch {v.get('torch')}, transformers {v.get('transformers')}, trl {v.get('trl')}, "
        f"ray {v.get('ray')}, Python {v.get('python')}, CUDA {v.get('cuda')}; "
        f"commit {meta.get('git_commit')}; torch threads {meta.get('torch_threads')}"
        + ("; **quick** (smoke sizes)" if meta.get("quick") else "")
        + (
            f"; load average at start {meta['load_average_start'][0]:.1f}"
            if meta.get("load_average_start")
            else ""
        ),
        "",
        *[f"    {c}" for c in commands if c],
        "",
    ]
    shapes = r.get("shapes", {})
    for part in (
        _targets,
        _train_table,
        _methods_table,
        _eval_table,
        _packing_table,
        _pack_runs_table,
        _trial_table,
    ):
        lines += part(shapes)
    lines += _sweep_lines(r.get("sweep"))
    for n, s in shapes.items():
        for section, msg in (s.get("errors") or {}).items():
            lines.append(f"- `{n}` section `{section}` failed: {msg.splitlines()[-1][:300]}")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.report", description=__doc__.split("\n")[0]
    )
    p.add_argument("files", nargs="+", help="result JSON files of one machine")
    p.add_argument("--merge-out", default=None, help="write the merged JSON here")
    p.add_argument("--md", default=None, help="write the Markdown here (default: stdout)")
    args = p.parse_args(argv)
    results = []
    for f in args.files:
        try:
            results.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            print(f"error: cannot read result file {f}: {err}", file=sys.stderr)
            return 2
    if args.merge_out:
        Path(args.merge_out).write_text(json.dumps(merge(results), indent=2) + "\n")
    text = render(results)
    if args.md:
        Path(args.md).write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
