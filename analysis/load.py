"""Read Ray Tune experiment directories into a trials table and a per-epoch table.

The layout (see docs/contracts.md, sweep): ``EXP/<trial_dir>/{params.json, result.json,
progress.csv, error.txt?, checkpoint_00000N/}``. ``result.json`` holds one JSON object per line,
one per ``tune.report``; ``progress.csv`` is the same history as CSV (used when result.json is
missing). Local paths and the URIs the sweep writes to (``s3://``, ``gs://``, ``file://``) are
read through ``pyarrow.fs``.
"""

from __future__ import annotations

import io
import json
import math
import os
import re

import pandas as pd
from pyarrow import fs as pafs

from analysis.errors import ExperimentDirError

# Trial statuses (docs/contracts.md): finished if a row says so, errored if error.txt exists,
# otherwise pruned by ASHA at the epoch of its last row. Two more, so nothing is mislabelled:
# "unfinished" when Ray's experiment_state-*.json says the trial is still PENDING, RUNNING or
# PAUSED (an interrupted or running sweep), and "empty" for a trial with no result row and no
# error.txt that Ray does not list as pending (killed before its first report).
# Two more count what is not in a trial's files: "not_started" for a grid point of the sweep
# (jola_sweep.json's ``grid``) with no trial directory, "unreadable" for a trial directory whose
# params.json cannot be read (a full disk leaves it empty); both are listed, never dropped.
STATUSES = ("finished", "pruned", "errored", "unfinished", "empty", "not_started", "unreadable")
RAY_OPEN = frozenset({"PENDING", "RUNNING", "PAUSED"})
# run_status of the result a trial sends before raising (jola_ray.sweep.recovery): not epochs.
MARKER_STATUSES = frozenset({"errored", "storage_error"})
SWEEP_MARKER = "jola_sweep.json"
# Top-level params.json keys that are not sweep axes.
_NOT_AXES = ("hp", "fixed", "group", "config_name", "pack_trial")
KEY_COLUMNS = ("task", "seed", "model", "method")
# The final report's dict of every resolved setting (``jola_ray.train``): setting -> value.
RESOLVED = "resolved"
# Result keys of the final row copied to the trials table (besides test_* metrics).
FINAL_KEYS = (
    "num_selected_heads",
    "trainable_params",
    "base_params",
    "cost_steps",
    "cost_tokens",
    "cost_wall_s",
    "cost_gpu_s",
    "cost_peak_mem_gb",
    "examples_train",
    "examples_dev",
    "examples_test",
    "train_truncated",
)
# Columns of the per-epoch table taken from each result row, in this order (others follow).
EPOCH_KEYS = (
    "epoch",
    "step",
    "train_loss",
    "train_penalty",
    "dev_loss",
    "dev_score",
    "open_gate_fraction",
    "train_lr",
    "run_status",
    "training_iteration",
    "time_total_s",
)
_CHECKPOINT = re.compile(r"^checkpoint_(\d+)$")


def resolve(path: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and in-filesystem path of a local path or a URI (s3://, gs://, file://)."""
    if "://" in path:
        try:
            return pafs.FileSystem.from_uri(path)
        except Exception as err:  # pyarrow raises several types for bad or unsupported URIs
            raise ExperimentDirError(f"cannot open experiment URI {path!r}: {err}") from err
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def join(root: str, name: str) -> str:
    """Join a path or URI and a child name with '/' (what both pyarrow and POSIX accept)."""
    return root.rstrip("/") + "/" + name


def _read_text(fs: pafs.FileSystem, path: str) -> str:
    with fs.open_input_stream(path) as stream:
        return stream.read().decode("utf-8", errors="replace")


def _children(fs: pafs.FileSystem, path: str) -> dict[str, pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return {info.base_name: info for info in infos}


def _flatten_params(params: dict) -> dict:
    """Top-level keys, then the leaves of nested dicts (``hp``, ``fixed``) by their leaf name.

    A leaf name seen twice with different values keeps the first and adds ``parent.leaf`` for
    the other, so nothing is lost. Lists become JSON strings (one scalar per cell).
    """
    flat: dict = {}

    def put(key: str, dotted: str, value) -> None:
        if isinstance(value, (list, tuple)):
            value = json.dumps(value)
        if key in flat and flat[key] != value:
            flat[dotted] = value
        else:
            flat.setdefault(key, value)

    def walk(d: dict, prefix: str) -> None:
        for key, value in d.items():
            if not isinstance(value, dict):
                put(key, prefix + key, value)
        for key, value in d.items():
            if isinstance(value, dict):
                walk(value, prefix + key + ".")

    walk(params, "")
    if "config_name" not in flat:
        hp = params.get("hp") if isinstance(params.get("hp"), dict) else {}
        flat["config_name"] = hp.get("name", "default")
    return flat


def read_result_rows(fs: pafs.FileSystem, trial: str) -> list[dict]:
    """The rows of a trial's ``result.json``, oldest first; nested values (Ray's ``config``
    copy) are dropped. Also used by the sweep's scheduler to rebuild ASHA rungs on resume."""
    rows: list[dict] = []
    for line in _read_text(fs, join(trial, "result.json")).splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            # A trial killed mid-write leaves a truncated last line; the earlier rows stand.
            continue
        if isinstance(row, dict):
            kept = {k: v for k, v in row.items() if not isinstance(v, (dict, list))}
            if isinstance(row.get(RESOLVED), dict):
                kept[RESOLVED] = row[RESOLVED]
            rows.append(kept)
    return rows


def _result_rows(fs: pafs.FileSystem, trial: str, names: dict) -> list[dict]:
    """The trial's reports, oldest first: ``result.json``, else ``progress.csv``."""
    rows = read_result_rows(fs, trial) if "result.json" in names else []
    if not rows and "progress.csv" in names:
        text = _read_text(fs, join(trial, "progress.csv"))
        if text.strip():
            frame = pd.read_csv(io.StringIO(text))
            frame = frame[[c for c in frame.columns if not c.startswith("config/")]]
            rows = []
            for rec in frame.to_dict("records"):
                row = {k: v for k, v in rec.items() if not (isinstance(v, float) and math.isnan(v))}
                resolved = {
                    k[len(RESOLVED) + 1 :]: row.pop(k)
                    for k in list(row)
                    if k.startswith(RESOLVED + "/")
                }
                if resolved:
                    row[RESOLVED] = resolved
                rows.append(row)
    return rows


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _epoch_of(row: dict) -> float:
    if "epoch" in row:
        return _num(row["epoch"])
    return _num(row.get("training_iteration"))


def _summarise(rows: list[dict], error_text: str | None) -> dict:
    """Status, best-epoch dev metrics, test metrics, head statistics and cost of one trial."""
    finals = [r for r in rows if r.get("run_status") == "finished"]
    final = finals[-1] if finals else None
    running = [r for r in rows if r.get("run_status") != "finished"]
    out: dict = {}
    if final is not None:
        out["status"] = "finished"
    elif error_text is not None:
        out["status"] = "errored"
    elif rows:
        out["status"] = "pruned"
    else:
        out["status"] = "empty"
    epochs = [_epoch_of(r) for r in rows if not math.isnan(_epoch_of(r))]
    out["epochs_run"] = max(epochs) if epochs else 0.0
    out["pruned_epoch"] = _epoch_of(rows[-1]) if out["status"] == "pruned" else math.nan
    out["error"] = None
    if error_text is not None:
        lines = [line.strip() for line in error_text.splitlines() if line.strip()]
        out["error"] = (lines[-1] if lines else "error.txt is empty")[:500]

    # Best epoch: the final row says which; a pruned trial's is its best dev_score so far.
    best_row = None
    if final is not None and not math.isnan(_num(final.get("best_epoch"))):
        best_epoch = _num(final["best_epoch"])
        best_row = next((r for r in running if _epoch_of(r) == best_epoch), final)
    elif running or final is not None:
        scored = [r for r in running if not math.isnan(_num(r.get("dev_score")))]
        # The first of equal best scores; no dev_score at all (zero-shot): the final row.
        best_row = max(scored, key=lambda r: _num(r["dev_score"])) if scored else final
    out["best_epoch"] = _epoch_of(best_row) if best_row is not None else math.nan
    if final is not None and not math.isnan(_num(final.get("best_dev_score"))):
        out["best_dev_score"] = _num(final["best_dev_score"])
    else:
        out["best_dev_score"] = _num(best_row.get("dev_score")) if best_row else math.nan
    if best_row is not None:
        for key, value in best_row.items():
            if key.startswith("dev_") and key != "dev_score":
                out[key] = _num(value)
    if final is not None:
        for key, value in final.items():
            if key.startswith("test_"):
                out[key] = _num(value)
        for key in FINAL_KEYS:
            if key in final:
                out[key] = _num(final[key])
        # the run's note when a split came out smaller than the space asked ("" when full)
        out["short_splits"] = str(final.get("short_splits") or "")
    last = rows[-1] if rows else {}
    out["open_gate_fraction"] = _num(last.get("open_gate_fraction"))
    out["time_total_s"] = _num(last.get("time_total_s"))
    # trained in a trial pack of this size: its seconds are its share of the pack's
    out["pack_size"] = _num(last.get("pack_size"))
    return out


def _epoch_table_rows(rows: list[dict]) -> list[dict]:
    """One row per epoch: the per-epoch report (the final row only where it is the sole one)."""
    seen: set = set()
    out = []
    for row in rows:
        epoch = _epoch_of(row)
        if epoch in seen:
            continue
        seen.add(epoch)
        entry = {k: row[k] for k in EPOCH_KEYS if k in row}
        entry["epoch"] = epoch
        # dev metrics and the recorded gate statistics (open_gate_fraction_<part>[_l<layer>])
        entry.update(
            {k: _num(v) for k, v in row.items() if k.startswith(("dev_", "open_gate_fraction_"))}
        )
        out.append(entry)
    return out


def last_checkpoint(trial_path: str) -> str | None:
    """Path (or URI) of the trial's highest-numbered ``checkpoint_00000N`` dir, or None."""
    fs, path = resolve(trial_path)
    try:
        names = _children(fs, path)
    except (FileNotFoundError, OSError):
        return None
    found = [
        (int(m.group(1)), name)
        for name, info in names.items()
        if (m := _CHECKPOINT.match(name)) and info.type == pafs.FileType.Directory
    ]
    return join(trial_path, max(found)[1]) if found else None


def read_gates(trial_path: str) -> pd.DataFrame | None:
    """The trial's ``gates.csv`` (layer, head, gate_add, gate_mul, ...) from its last checkpoint.

    None when there is no checkpoint or no gates.csv (zero-shot, pruned early, other methods).
    """
    ckpt = last_checkpoint(trial_path)
    if ckpt is None:
        return None
    fs, path = resolve(join(ckpt, "gates.csv"))
    if fs.get_file_info(path).type != pafs.FileType.File:
        return None
    frame = pd.read_csv(io.StringIO(_read_text(fs, path)))
    if not {"layer", "head"} <= set(frame.columns):
        return None
    return frame


def _ray_trials(fs: pafs.FileSystem, root: str, top: dict) -> list[dict]:
    """The trials of the newest ``experiment_state-*.json`` (each Ray's own JSON of a trial:
    ``trial_id``, ``status``, ``config``, ...); empty when there is none or it cannot be read
    (it is optional: the trial files alone then say everything)."""
    names = sorted(n for n in top if n.startswith("experiment_state-") and n.endswith(".json"))
    if not names:
        return []
    try:
        state = json.loads(_read_text(fs, join(root, names[-1])))
        trials = [json.loads(trial_json) for trial_json, _runtime in state["trial_data"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not all(isinstance(t, dict) and "trial_id" in t for t in trials):
        return []  # a trial that does not name itself: the state is not used
    return trials


def _ray_statuses(trials: list[dict]) -> dict[str, str]:
    """trial_id -> Ray's status (PENDING, RUNNING, PAUSED, TERMINATED, ERROR); empty when a
    trial has none (the state is then not used)."""
    try:
        return {str(t["trial_id"]): str(t["status"]) for t in trials}
    except KeyError:
        return {}


def _ray_configs(trials: list[dict]) -> dict[str, dict]:
    """trial_id -> the trial's config (what params.json holds)."""
    out = {}
    for trial in trials:
        config = trial.get("config")
        if isinstance(config, dict) and isinstance(config.get("trial"), dict):
            config = config["trial"]  # Ray's grid axis wraps the trial's dict
        if isinstance(config, dict):
            out[str(trial["trial_id"])] = config
    return out


def grid_key(point: dict) -> str:
    """A grid point's identity: its top-level axes and configuration name (as the sweep's
    ``jola_sweep.json`` lists them)."""
    # a pack member's params.json also names its pack trial: not part of the grid point
    key = {k: v for k, v in point.items() if k not in ("hp", "fixed", "group", "pack_trial")}
    if isinstance(point.get("hp"), dict):
        key["config_name"] = point["hp"].get("config_name", point["hp"].get("name", "default"))
    return json.dumps(key, sort_keys=True, default=str)


def _sweep_grid(fs: pafs.FileSystem, root: str, top: dict) -> list[dict]:
    """The grid points the sweep wrote into jola_sweep.json (empty for older experiments)."""
    if SWEEP_MARKER not in top:
        return []
    try:
        grid = json.loads(_read_text(fs, join(root, SWEEP_MARKER))).get("grid") or []
    except (OSError, ValueError, AttributeError):
        return []
    return [p for p in grid if isinstance(p, dict) and all(k in p for k in KEY_COLUMNS)]


def ray_statuses(exp_dir: str) -> dict[str, str]:
    """trial_id -> Ray's status for an experiment directory (see ``_ray_statuses``)."""
    fs, root = resolve(exp_dir)
    try:
        return _ray_statuses(_ray_trials(fs, root, _children(fs, root)))
    except OSError:  # no such directory yet, or storage unreachable
        return {}


def _looks_like_trial(names: dict) -> bool:
    return "params.json" in names


def load_experiment(exp_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trials table (one row per trial) and epochs table (one row per trial and epoch)."""
    fs, root = resolve(exp_dir)
    try:
        info = fs.get_file_info(root)
    except OSError as err:  # remote storage unreachable or no credentials
        raise ExperimentDirError(f"cannot read experiment directory {exp_dir}: {err}") from err
    if info.type == pafs.FileType.NotFound:
        raise ExperimentDirError(f"experiment directory {exp_dir} does not exist")
    if info.type != pafs.FileType.Directory:
        raise ExperimentDirError(
            f"{exp_dir} is a file; expected a Ray Tune experiment directory "
            "(one subdirectory per trial, each with params.json and result.json)"
        )
    top = _children(fs, root)
    if _looks_like_trial(top):
        raise ExperimentDirError(
            f"{exp_dir} is a single trial directory (it holds params.json); pass the experiment "
            "directory above it"
        )
    trial_dirs = []
    for name, child in sorted(top.items()):
        if child.type != pafs.FileType.Directory:
            continue
        names = _children(fs, join(root, name))
        if _looks_like_trial(names):
            trial_dirs.append((name, names))
    if not trial_dirs:
        shown = ", ".join(sorted(top)[:8]) or "nothing"
        raise ExperimentDirError(
            f"{exp_dir} is not a Ray Tune experiment directory: expected one subdirectory per "
            "trial holding params.json and result.json or progress.csv (the layout "
            f"`jola-ray sweep` writes), found {shown}"
        )

    ray_trials = _ray_trials(fs, root, top)  # read once: it can be large
    ray_status = _ray_statuses(ray_trials)
    ray_config = _ray_configs(ray_trials)
    grid = _sweep_grid(fs, root, top)
    trials, epochs = [], []
    seen_keys: set[str] = set()
    unknown_unreadable = 0
    unreadable: list[ExperimentDirError] = []
    for name, names in trial_dirs:
        trial = join(root, name)
        params_path = join(exp_dir, name + "/params.json")
        try:
            params = _read_params(fs, trial, params_path)
        except ExperimentDirError as err:
            unreadable.append(err)
            row = _unreadable_row(exp_dir, name, str(err), ray_config, ray_status)
            if row.get("grid_key"):
                seen_keys.add(row.pop("grid_key"))
            else:
                row.pop("grid_key", None)
                unknown_unreadable += 1
            trials.append(row)
            continue
        if isinstance(params.get("pack"), list):
            continue  # a trial pack: its members have their own directories (sweep/packs.py)
        seen_keys.add(grid_key(params))
        config = _flatten_params(params)
        rows = _result_rows(fs, trial, names)
        error_text = _read_text(fs, join(trial, "error.txt")) if "error.txt" in names else None
        markers = [r for r in rows if r.get("run_status") in MARKER_STATUSES]
        rows = [r for r in rows if r.get("run_status") not in MARKER_STATUSES]
        if error_text is None and markers:
            error_text = str(markers[-1].get("error") or markers[-1]["run_status"])
        summary = _summarise(rows, error_text)
        trial_id = next((str(r["trial_id"]) for r in rows if "trial_id" in r), None)
        if trial_id is None:  # no report yet: Ray's dir names end in or contain the trial id
            trial_id = next((t for t in ray_status if t in name), name)
        # a pack's member is as open as the Ray trial (the pack) that trains it
        ray_id = str(params.get("pack_trial", trial_id))
        if summary["status"] in ("pruned", "empty") and ray_status.get(ray_id) in RAY_OPEN:
            summary["status"] = "unfinished"
            summary["pruned_epoch"] = math.nan
        record = {
            "experiment": exp_dir,
            "trial_dir": name,
            "trial_path": join(exp_dir, name),
            "trial_id": str(trial_id),
        }
        record.update({k: config[k] for k in KEY_COLUMNS})
        record["config_name"] = config["config_name"]
        record.update(summary)
        record["max_epochs"] = _num(config.get("epochs"))
        # Extra sweep axes (any RunConfig leaf such as train_size) sit at the top of params.json.
        extra = [k for k in params if k not in (*KEY_COLUMNS, *_NOT_AXES)]
        extra = [k for k in extra if not isinstance(params[k], dict)]
        record["extra_axes"] = ",".join(extra)
        for key, value in config.items():
            if key in ("epochs", "config_name", *KEY_COLUMNS):
                continue
            record["cfg_" + key if key in record else key] = value
        # Every resolved setting of a finished trial (defaults and profile values included),
        # under its one name; the sweep's own values above agree with it.
        final = next((r for r in reversed(rows) if r.get("run_status") == "finished"), {})
        for key, value in (final.get(RESOLVED) or {}).items():
            if key in (*KEY_COLUMNS, "config_name"):
                continue
            column = "cfg_" + key if key in summary or key in ("experiment", "trial_dir") else key
            if column not in record:
                record[column] = value
        trials.append(record)
        for entry in _epoch_table_rows(rows):
            head = {k: record[k] for k in ("experiment", "trial_dir", "trial_id", *KEY_COLUMNS)}
            head.update(config_name=record["config_name"], status=record["status"])
            for axis in extra + ["train_size"]:
                if axis in config:
                    head[axis] = config[axis]
            epochs.append({**head, **entry})
    if unreadable and len(unreadable) == len(trial_dirs):
        raise unreadable[0]  # not one trial to report: say what is wrong with the first
    missing = [p for p in grid if grid_key(p) not in seen_keys]
    # an unreadable trial with no known config is one of the missing points: count it once
    for point in missing[unknown_unreadable:]:
        trials.append(_not_started_row(exp_dir, point))
    return pd.DataFrame(trials), pd.DataFrame(epochs)


def _read_params(fs: pafs.FileSystem, trial: str, params_path: str) -> dict:
    """A trial's params.json, or ExperimentDirError naming the file and what is wrong."""
    try:
        params = json.loads(_read_text(fs, join(trial, "params.json")))
    except json.JSONDecodeError as err:
        raise ExperimentDirError(f"{params_path} is not valid JSON: {err}") from err
    if not isinstance(params, dict):
        raise ExperimentDirError(f"{params_path} must hold a JSON object")
    if isinstance(params.get("trial"), dict):  # Ray's grid axis wraps the trial's dict
        params = params["trial"]
    missing = [k for k in KEY_COLUMNS if k not in params]
    if missing:
        raise ExperimentDirError(
            f"{params_path} has no {', '.join(missing)}: expected the keys "
            f"{', '.join(KEY_COLUMNS)} (and hp, fixed) as written by `jola-ray sweep`"
        )
    return params


def _placeholder(exp_dir: str, point: dict, status: str, error) -> dict:
    """A trials-table row for a trial without results (counted in the status table only)."""
    hp = point.get("hp") if isinstance(point.get("hp"), dict) else {}
    record = {k: point.get(k, "?") for k in KEY_COLUMNS}
    record.update(
        experiment=exp_dir,
        trial_dir="",
        trial_path="",
        trial_id="",
        config_name=point.get("config_name", hp.get("config_name", "?")),
        status=status,
        epochs_run=0.0,
        pruned_epoch=math.nan,
        error=error,
        best_epoch=math.nan,
        best_dev_score=math.nan,
        max_epochs=math.nan,
    )
    for key, value in point.items():
        if key not in record and not isinstance(value, (dict, list)) and key != "group":
            record[key] = value
    return record


def _not_started_row(exp_dir: str, point: dict) -> dict:
    return _placeholder(exp_dir, point, "not_started", None)


def _unreadable_row(exp_dir, name, message, ray_config, ray_status) -> dict:
    """The row of a trial whose params.json cannot be read: its config from Ray's experiment
    state when the directory name holds a trial id found there, else unknown ("?")."""
    trial_id = next((t for t in ray_config if name.endswith(t) or t in name), None)
    point = ray_config.get(trial_id, {}) if trial_id else {}
    record = _placeholder(exp_dir, point, "unreadable", f"skipped: {message}")
    record.update(trial_dir=name, trial_path=join(exp_dir, name), trial_id=trial_id or "")
    record["grid_key"] = grid_key(point) if point else None
    return record


def load_experiments(exp_dirs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Load one or several experiment directories (paths or URIs) into one pair of tables."""
    if isinstance(exp_dirs, (str, os.PathLike)):
        exp_dirs = [exp_dirs]
    loaded = [load_experiment(os.fspath(d)) for d in exp_dirs]
    if not loaded:
        raise ExperimentDirError("no experiment directory given")
    trials = pd.concat([t for t, _ in loaded], ignore_index=True)
    frames = [e for _, e in loaded if not e.empty]
    epochs = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return trials, epochs
