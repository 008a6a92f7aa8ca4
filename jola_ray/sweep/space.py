"""Search spaces: load a YAML sweep, validate it (every error at once), expand it into trials.

A space names the axes (tasks, seeds, models, methods, and any extra RunConfig leaf such as
``train_size``), the named hyperparameter configurations (one list for every trained method, or
one list per method: ``configs: {jola: [...], lora: [...]}``), the fixed settings, the metric,
the scheduler, the resources and where results go. Settings keep their one name: shared ones
bare (``lr``), a method's as ``<method>.<field>`` (dotted, or nested ``lora: {r: 8}``), and a
method's settings apply to that method's trials only. ``trials()`` turns the space into one
plain dict per trial (handed to Ray as ``{"trial": tune.grid_search(trials)}``):

    {"task", "seed", "model", "method", <extra axes>, "hp": {"config_name", ...},
     "fixed": {...}, "group": "method=...|model=...|task=...|seed=..."}

With ``pack`` set, the configurations of a group whose method packs (``Method.packs``), whose
task trains with SFT and whose own settings pack (``unpacked_reason``: not JoLA at another site
than the heads) become one trial per pack (at most ``pack`` configurations each; the others stay
single trials):
``{..., "hp": {"config_name": "d1+d2+..."}, "pack": [hp, hp, ...], ...}``; ``members(trial)``
gives each configuration's own trial dict back (``jola_ray.sweep.packs``).

Nothing here imports Ray: ``jola-ray sweep --dry-run`` answers before any cluster starts.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jola_ray.errors import ConfigError
from jola_ray.methods import catalog

# Ray's param_space is {TRIAL_KEY: tune.grid_search(trials)}: a trial's config wraps its dict.
TRIAL_KEY = "trial"
# The axes every space has; extra axes (any RunConfig leaf) come from the ``axes`` mapping.
CORE_AXES = ("task", "seed", "model", "method")
# Keys of a trial dict that are not RunConfig leaves.
TRIAL_KEYS = frozenset({"hp", "fixed", "group", "pack"})
SCHEDULER_TYPES = ("asha", "fifo")
RESOURCE_KEYS = ("cpu", "gpu")

TOP_KEYS = {
    "name": "experiment name (default: the file's stem)",
    "description": "free text",
    "tasks": "list of task names (jola-ray tasks)",
    "seeds": "list of integer seeds",
    "models": "list of model specs (hub id, local path, tiny-<arch>)",
    "methods": "list of methods (jola-ray params --help lists them)",
    "axes": "mapping RunConfig leaf -> list of values, crossed with the others",
    "configs": "named configurations (name + settings): a list, or method -> list",
    "fixed": "mapping RunConfig leaf -> value, the same for every trial",
    "model_overrides": "mapping model -> {RunConfig leaf: value} added to that model's fixed",
    "metric": "metric ASHA compares (default dev_score)",
    "mode": "max or min (default max)",
    "scheduler": "mapping: type (asha|fifo), grace_period, reduction_factor, max_t, brackets",
    "resources": "mapping: cpu, gpu per trial (gpu may be a fraction < 1)",
    "max_concurrent_trials": "cap on trials running at once (default: as resources allow)",
    "max_failures": "retries of a failed trial from its last checkpoint (default 1)",
    "storage_path": "directory or URI (s3://, gs://) the experiment lands under",
    "pack": "train a group's configurations together: true, a pack size, or false (default)",
}


def _shipped_dir() -> Path:
    """The shipped spaces: package data ``jola_ray/search_spaces`` (in a source checkout a link
    to the top-level ``search_spaces/``, their source; in a wheel, copies of the files)."""
    from importlib.resources import files

    return Path(str(files("jola_ray") / "search_spaces"))


SHIPPED_DIR = _shipped_dir()


@dataclass(frozen=True)
class SchedulerSpec:
    """Early stopping: ``asha`` (grouped per task, seed, model, method) or ``fifo`` (none)."""

    type: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 3
    max_t: int | None = None  # None: the largest ``epochs`` of any trial
    brackets: int = 1


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. ``source`` is the file it came from (named in messages)."""

    name: str
    source: str
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    models: tuple[str, ...]
    methods: tuple[str, ...]
    axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    configs: dict[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # per method
    fixed: dict[str, Any] = field(default_factory=dict)
    model_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric: str = "dev_score"
    mode: str = "max"
    scheduler: SchedulerSpec = field(default_factory=SchedulerSpec)
    resources: dict[str, float] = field(default_factory=lambda: {"cpu": 1.0, "gpu": 1.0})
    max_concurrent_trials: int | None = None
    max_failures: int = 1
    storage_path: str | None = None
    description: str = ""
    pack: int = 0  # configurations per trial pack (0: no packs)

    def trials(self) -> list[dict[str, Any]]:
        """One dict per grid point, in the ``params.json`` layout (see the module docstring).

        Order: model, task, seed, method, extra axes, then configuration innermost, so the
        configurations of one group start close together (ASHA compares them at its rungs) and
        every trial of one model comes before the next model's (a reused worker keeps its
        model for the next trial it is handed: ``jola_ray.train.resident``).
        A method without configurations (zero-shot) gets one trial per grid point with
        ``hp = {"config_name": <the method's name>}``. A method's settings in ``fixed`` or
        ``model_overrides`` go to that method's trials only.
        """
        extra_names = sorted(self.axes)
        fixed = dict(self.fixed)
        gpu = self.resources.get("gpu", 0.0)
        if 0 < gpu < 1 and "gpu_memory_fraction" not in fixed:
            fixed["gpu_memory_fraction"] = gpu  # each packed trial caps its own share
        out = []
        for model, task, seed, method in itertools.product(
            self.models, self.tasks, self.seeds, self.methods
        ):
            for extra in itertools.product(*(self.axes[n] for n in extra_names)):
                point = {"task": task, "seed": seed, "model": model, "method": method}
                trial_fixed = _for_method({**fixed, **self.model_overrides.get(model, {})}, method)
                point.update(zip(extra_names, extra, strict=True))
                group = group_key(point, extra_names)
                if not catalog.is_tuned(method):
                    hps = [{"config_name": method}]
                else:
                    hps = [
                        {"config_name": c["name"], **{k: v for k, v in c.items() if k != "name"}}
                        for c in self.configs.get(method, ())
                    ]
                base = {**point, "fixed": dict(trial_fixed), "group": group}
                packed = []
                if self.pack and len(hps) > 1:
                    packed = [hp for hp in hps if unpacked_reason({**base, "hp": hp}) is None]
                if len(packed) > 1:
                    for i in range(0, len(packed), self.pack):
                        chunk = packed[i : i + self.pack]
                        name = "+".join(str(h["config_name"]) for h in chunk)
                        out.append({**base, "hp": {"config_name": name}, "pack": chunk})
                    hps = [hp for hp in hps if not any(hp is p for p in packed)]
                for hp in hps:
                    out.append({**base, "hp": hp})
        return out

    def member_trials(self) -> list[dict[str, Any]]:
        """Every configuration's own trial dict (packs expanded): what the results show."""
        return [m for t in self.trials() for m in members(t)]

    def grid_size(self) -> int:
        return len(self.trials())

    def fingerprint(self) -> str:
        """A hash of everything that decides which trials run and how they are compared."""
        payload = {
            "trials": self.trials(),
            "metric": self.metric,
            "mode": self.mode,
            "scheduler": vars(self.scheduler),
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def members(trial: dict[str, Any]) -> list[dict[str, Any]]:
    """A pack trial's member trial dicts (each as it would be unpacked), or ``[trial]``."""
    trial = trial_of(trial)
    if "pack" not in trial:
        return [trial]
    base = {k: v for k, v in trial.items() if k not in ("pack", "hp")}
    return [{**base, "hp": dict(hp)} for hp in trial["pack"]]


def unpacked_reason(trial: dict[str, Any]) -> str | None:
    """Why one configuration's trial dict trains unpacked under ``pack``, or None when it packs:
    its method does not pack (``Method.packs``), its task trains with preferences (DPO), or its
    own settings run unpacked (``Method.unpacked``: JoLA at another site than the heads).
    Unknown tasks count as SFT and invalid settings as packing: their checks report them."""
    from jola_ray.methods import registry

    trial = trial_of(trial)
    method = registry.get(trial["method"])
    if not method.packs:
        return method.unpacked_reason(None)
    try:
        from jola_ray.data import get_task

        training = get_task(trial["task"]).training
    except Exception:  # data layer absent or unknown task (reported by _check_tasks)
        training = "sft"
    if training != "sft":
        return f"task {trial['task']} trains with {training} (packs train SFT tasks)"
    if method.unpacked is None:
        return None
    prefix = f"{method.name}."
    flat = run_config_dict(trial)
    cfg, problems = method.build_config(
        {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
    )
    return None if problems else method.unpacked_reason(cfg)


def group_key(point: dict[str, Any], extra_names: list[str] | tuple[str, ...] = ()) -> str:
    """Trials with the same key differ only in their hyperparameter configuration."""
    parts = [f"{k}={point[k]}" for k in ("method", "model", "task", "seed")]
    parts += [f"{k}={point[k]}" for k in sorted(extra_names)]
    return "|".join(parts)


def _for_method(settings: dict[str, Any], method: str) -> dict[str, Any]:
    """``settings`` without other methods' ``<method>.<field>`` entries."""
    return {k: v for k, v in settings.items() if "." not in k or k.split(".", 1)[0] == method}


def _dotted(d: dict[str, Any], methods: set[str]) -> dict[str, Any]:
    """Nested method sections (``lora: {r: 8}``) as dotted names (``lora.r``)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        if key in methods and isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def trial_of(config: dict[str, Any]) -> dict[str, Any]:
    """The trial dict inside a Ray trial config (``{"trial": {...}}``), or the dict itself."""
    inner = config.get(TRIAL_KEY)
    return inner if isinstance(inner, dict) else config


def run_config_dict(trial: dict[str, Any]) -> dict[str, Any]:
    """The flat RunConfig dict of one trial: axes, fixed settings, then the configuration."""
    trial = trial_of(trial)
    flat = {k: v for k, v in trial.items() if k not in TRIAL_KEYS}
    flat.update(trial.get("fixed", {}))
    flat.update({k: v for k, v in trial.get("hp", {}).items() if k != "config_name"})
    return flat


def shipped_spaces() -> list[str]:
    """Names of the shipped spaces (package data, see ``SHIPPED_DIR``)."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.yaml"))


def resolve_space_path(space: str | Path) -> Path:
    """A file path as given, or the name of a shipped space (``demo``, ``commonsense``, ...)."""
    path = Path(space)
    if path.is_file():
        return path
    from jola_ray.sweep.preflight import space_path_problem

    if problem := space_path_problem(path):
        raise ConfigError(problem)
    shipped = SHIPPED_DIR / f"{space}.yaml"
    if shipped.is_file():
        return shipped
    names = shipped_spaces()
    close = difflib.get_close_matches(str(space), names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ConfigError(
        f"search space {str(space)!r}: no such file and no shipped space of that name{hint}; "
        f"shipped: {', '.join(names) or 'none'}"
    )


def load_space(
    space: str | Path, check_registry: bool = True, pack: bool | int | None = None
) -> SearchSpace:
    """Read, validate and return a search space (a file or a shipped name).

    ``pack`` (``jola-ray sweep --pack``) replaces the file's ``pack`` key before validation, so
    any space, shipped ones included, runs packed without editing it; None keeps the file's.

    Raises:
        ConfigError: listing every problem at once, each naming the file, key and value.
    """
    from jola_ray.sweep.preflight import read_space_yaml

    path = resolve_space_path(space)
    src = str(path)
    raw = read_space_yaml(path)  # duplicate keys refused, naming both lines
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: a search space is a mapping of keys, got {type(raw).__name__}")
    if pack is not None:
        raw = {**raw, "pack": pack}
    return parse_space(raw, src, default_name=path.stem, check_registry=check_registry)


def parse_space(
    raw: dict[str, Any], src: str, default_name: str = "sweep", check_registry: bool = True
) -> SearchSpace:
    """Validate a parsed YAML mapping (see ``load_space``).

    ``check_registry`` also checks task names against ``jola_ray.data`` and builds every
    trial's ``jola_ray.train.RunConfig`` (when those layers are importable); tests of the sweep
    machinery with stub runs turn it off.
    """
    problems: list[str] = []

    def bad(key: str, msg: str) -> None:
        problems.append(f"{key}: {msg}")

    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            bad(str(key), f"unknown key{hint}; known: {', '.join(TOP_KEYS)}")

    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        bad("name", f"{name!r} must be a plain directory name")
        name = default_name

    tasks = _axis_list(raw, "tasks", str, bad)
    seeds = _axis_list(raw, "seeds", int, bad)
    models = _axis_list(raw, "models", str, bad)
    methods = _axis_list(raw, "methods", str, bad)

    axes: dict[str, tuple[Any, ...]] = {}
    raw_axes = raw.get("axes") or {}
    if not isinstance(raw_axes, dict):
        bad("axes", f"must be a mapping of field -> list of values, got {raw_axes!r}")
        raw_axes = {}
    for axis, values in raw_axes.items():
        if axis in CORE_AXES or axis in TRIAL_KEYS or axis in ("name", "config_name"):
            bad(f"axes.{axis}", "reserved name; use the top-level list (tasks, seeds, ...)")
        elif not isinstance(values, list) or not values:
            bad(f"axes.{axis}", f"must be a non-empty list, got {values!r}")
        elif _has_duplicates(values):
            bad(f"axes.{axis}", f"duplicate values in {values!r}")
        else:
            axes[str(axis)] = tuple(values)

    from jola_ray.methods import registry

    known_methods = set(registry.names())
    for m in methods:
        if m not in known_methods:
            bad("methods", f"unknown method {m!r}{_did_you_mean(m, known_methods)}")
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        bad("fixed", f"must be a mapping of RunConfig field -> value, got {fixed!r}")
        fixed = {}
    fixed = _dotted(fixed, known_methods)
    for key in fixed:
        if key in CORE_AXES or key in TRIAL_KEYS:
            bad(f"fixed.{key}", "is an axis of the sweep; list it under tasks/seeds/models/methods")
        elif key in axes:
            bad(f"fixed.{key}", "is also an axis (axes.{key}); keep one")

    overrides = raw.get("model_overrides") or {}
    if not isinstance(overrides, dict):
        bad("model_overrides", f"must be a mapping model -> settings, got {overrides!r}")
        overrides = {}
    for model, settings in overrides.items():
        where = f"model_overrides.{model}"
        if model not in models:
            bad(where, f"{model!r} is not in models ({', '.join(map(str, models))})")
        if not isinstance(settings, dict):
            bad(where, f"must be a mapping of RunConfig field -> value, got {settings!r}")
            continue
        for key in _dotted(settings, known_methods):
            if key in CORE_AXES or key in TRIAL_KEYS or key in axes:
                bad(f"{where}.{key}", "is an axis of the sweep; it cannot be overridden per model")
    overrides = {
        m: _dotted(dict(v), known_methods) for m, v in overrides.items() if isinstance(v, dict)
    }
    fixed_like = {**fixed, **{k: v for o in overrides.values() for k, v in o.items()}}

    configs = _parse_configs(raw.get("configs"), methods, axes, fixed_like, bad, known_methods)

    metric = raw.get("metric", "dev_score")
    if not isinstance(metric, str) or not metric:
        bad("metric", f"{metric!r} must be a metric name such as dev_score")
        metric = "dev_score"
    mode = raw.get("mode", "max")
    if mode not in ("max", "min"):
        bad("mode", f"{mode!r} must be max or min")
        mode = "max"

    scheduler = _parse_scheduler(raw.get("scheduler"), bad)
    resources = _parse_resources(raw.get("resources"), bad)

    max_conc = raw.get("max_concurrent_trials")
    if max_conc is not None and not (_is_int(max_conc) and max_conc >= 1):
        bad("max_concurrent_trials", f"{max_conc!r} must be an integer >= 1 (or absent)")
        max_conc = None
    max_failures = raw.get("max_failures", 1)
    if not (_is_int(max_failures) and max_failures >= -1):
        bad("max_failures", f"{max_failures!r} must be an integer >= -1 (-1: retry forever)")
        max_failures = 1
    storage = raw.get("storage_path")
    if storage is not None and (not isinstance(storage, str) or not storage):
        bad("storage_path", f"{storage!r} must be a directory path or a URI")
        storage = None
    description = raw.get("description", "")
    pack_raw = raw.get("pack", False)
    pack = 0
    if pack_raw is True:
        pack = max((len(c) for c in configs.values()), default=1)
    elif pack_raw is False or pack_raw is None:
        pack = 0
    elif _is_int(pack_raw) and pack_raw >= 1:
        pack = int(pack_raw) if pack_raw > 1 else 0
    else:
        bad("pack", f"{pack_raw!r} must be true, false or a pack size (an integer >= 1)")

    if check_registry:
        from jola_ray.sweep.preflight import check_metric, check_models

        _check_tasks(tasks, bad)
        problems += check_models(models) + check_metric(metric, tasks)

    space = SearchSpace(
        name=name,
        source=src,
        tasks=tuple(tasks),
        seeds=tuple(seeds),
        models=tuple(models),
        methods=tuple(methods),
        axes=axes,
        configs=configs,
        fixed=dict(fixed),
        model_overrides=overrides,
        metric=metric,
        mode=mode,
        scheduler=scheduler,
        resources=resources,
        max_concurrent_trials=max_conc,
        max_failures=int(max_failures),
        storage_path=storage,
        description=str(description or ""),
        pack=pack,
    )
    if check_registry:
        problems += _check_run_configs(space)
    if not problems and space.scheduler.type == "asha":
        problems += _check_max_t(space)
    if problems:
        raise ConfigError(
            f"{src}: {len(problems)} problem(s) in the search space:\n  " + "\n  ".join(problems)
        )
    return space


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _has_duplicates(values: list[Any]) -> bool:
    seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
    return len(set(seen)) != len(seen)


def _axis_list(raw: dict, key: str, kind: type, bad) -> list:
    values = raw.get(key)
    if values is None:
        bad(key, "missing; give a non-empty list")
        return []
    if not isinstance(values, list) or not values:
        bad(key, f"must be a non-empty list, got {values!r}")
        return []
    good = []
    for v in values:
        ok = _is_int(v) if kind is int else isinstance(v, kind) and v != ""
        if not ok:
            bad(key, f"value {v!r} is not a {'integer' if kind is int else 'non-empty string'}")
        else:
            good.append(v)
    if _has_duplicates(values):
        bad(key, f"duplicate values in {values!r}")
    return good


def _did_you_mean(name: str, known) -> str:
    from jola_ray.settings import did_you_mean

    return did_you_mean(name, sorted(known))


def _parse_configs(
    raw_configs, methods, axes, fixed, bad, known_methods
) -> dict[str, tuple[dict[str, Any], ...]]:
    """Method -> its named configurations. A list is every trained method's; a mapping gives
    each trained method its own list. Each configuration names shared settings and its own
    method's (``<method>.<field>``) only."""
    tuned = [m for m in methods if catalog.is_tuned(m)]
    if raw_configs is None:
        if tuned:
            bad("configs", f"missing; trained methods ({', '.join(tuned)}) need configurations")
        return {}
    if isinstance(raw_configs, dict):
        per_method = raw_configs
        for m in per_method:
            if m not in tuned:
                why = "takes no configurations" if m in methods else "is not in methods"
                bad(f"configs.{m}", f"method {m!r} {why} ({', '.join(map(str, methods))})")
        for m in tuned:
            if m not in per_method:
                bad("configs", f"no configurations for method {m!r} (give configs.{m})")
        prefix = "configs.{m}"
    elif isinstance(raw_configs, list):
        per_method = {m: raw_configs for m in tuned}
        prefix = "configs" if len(tuned) <= 1 else "configs (for {m})"
    else:
        bad(
            "configs",
            f"must be a list of named configurations or method -> list, got {raw_configs!r}",
        )
        return {}
    out: dict[str, tuple[dict[str, Any], ...]] = {}
    for m, items in per_method.items():
        if m not in tuned:
            continue
        base = prefix.format(m=m)
        if not isinstance(items, list) or not items:
            bad(base, f"must be a non-empty list of mappings with a name, got {items!r}")
            continue
        configs, names = [], []
        for i, c in enumerate(items):
            where = f"{base}[{i}]"
            if not isinstance(c, dict):
                bad(where, f"must be a mapping with a name, got {c!r}")
                continue
            cname = c.get("name")
            if not isinstance(cname, str) or not cname:
                bad(
                    f"{where}.name", f"{cname!r}: every configuration needs a non-empty string name"
                )
                continue
            where = f"{base}[{i}] ({cname})"
            if cname in known_methods:
                bad(f"{where}.name", f"{cname!r} is a method's name; choose another")
            if cname in names:
                bad(f"{where}.name", f"duplicate configuration name {cname!r}")
            names.append(cname)
            c = _dotted(c, known_methods)
            for key in c:
                owner = key.split(".", 1)[0] if "." in key else None
                if key in CORE_AXES or key in TRIAL_KEYS or key == "config_name":
                    bad(f"{where}.{key}", "reserved; axes go at the top level")
                elif key in axes:
                    bad(f"{where}.{key}", f"is also an axis (axes.{key}); keep one")
                elif key in fixed:
                    bad(
                        f"{where}.{key}",
                        f"is also in fixed/model_overrides ({fixed[key]!r}); keep one",
                    )
                elif owner is not None and owner in known_methods and owner != m:
                    bad(
                        f"{where}.{key}",
                        f"is a setting of {owner}; a configuration of {m} names {m}.* and "
                        "shared settings only (give configs per method)",
                    )
            configs.append(c)
        out[m] = tuple(configs)
    return out


def _parse_scheduler(raw, bad) -> SchedulerSpec:
    if raw is None:
        return SchedulerSpec()
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        bad("scheduler", f"must be a mapping (type, grace_period, ...), got {raw!r}")
        return SchedulerSpec()
    known = ("type", "grace_period", "reduction_factor", "max_t", "brackets")
    for key in raw:
        if key not in known:
            bad(f"scheduler.{key}", f"unknown key; known: {', '.join(known)}")
    kind = raw.get("type", "asha")
    if kind not in SCHEDULER_TYPES:
        bad("scheduler.type", f"{kind!r} must be one of {', '.join(SCHEDULER_TYPES)}")
        kind = "asha"
    grace = raw.get("grace_period", 1)
    if not (_is_int(grace) and grace >= 1):
        bad("scheduler.grace_period", f"{grace!r} must be an integer >= 1")
        grace = 1
    rf = raw.get("reduction_factor", 3)
    if not (_is_number(rf) and rf >= 2):
        bad("scheduler.reduction_factor", f"{rf!r} must be a number >= 2")
        rf = 3
    max_t = raw.get("max_t")
    if max_t is not None and not (_is_int(max_t) and max_t >= 1):
        bad("scheduler.max_t", f"{max_t!r} must be an integer >= 1 (epochs) or absent")
        max_t = None
    if max_t is not None and max_t < grace:
        bad("scheduler.max_t", f"{max_t!r} is below grace_period {grace}")
    brackets = raw.get("brackets", 1)
    if not (_is_int(brackets) and brackets >= 1):
        bad("scheduler.brackets", f"{brackets!r} must be an integer >= 1")
        brackets = 1
    return SchedulerSpec(kind, grace, rf, max_t, brackets)


def _parse_resources(raw, bad) -> dict[str, float]:
    if raw is None:
        return {"cpu": 1.0, "gpu": 1.0}
    if not isinstance(raw, dict):
        bad("resources", f"must be a mapping (cpu, gpu), got {raw!r}")
        return {"cpu": 1.0, "gpu": 1.0}
    for key in raw:
        if key not in RESOURCE_KEYS:
            bad(f"resources.{key}", f"unknown resource; known: {', '.join(RESOURCE_KEYS)}")
    cpu = raw.get("cpu", 1)
    if not (_is_number(cpu) and cpu > 0):
        bad("resources.cpu", f"{cpu!r} must be a number > 0")
        cpu = 1
    gpu = raw.get("gpu", 1)
    if not (_is_number(gpu) and gpu >= 0):
        bad("resources.gpu", f"{gpu!r} must be a number >= 0")
        gpu = 1
    elif gpu > 1 and gpu != int(gpu):
        bad("resources.gpu", f"{gpu!r}: above 1 a trial takes whole GPUs")
    return {"cpu": float(cpu), "gpu": float(gpu)}


def _check_tasks(tasks: list[str], bad) -> None:
    try:
        from jola_ray.data import get_task
    except ImportError:
        return  # data layer absent: names checked when a trial loads its task
    from jola_ray.errors import UnknownTaskError

    for t in tasks:
        try:
            get_task(t)
        except UnknownTaskError as err:
            bad("tasks", f"{t!r}: {err}")


def _run_config_class():
    try:
        from jola_ray.train import RunConfig
    except ImportError:
        return None
    return RunConfig


def _check_run_configs(space: SearchSpace) -> list[str]:
    """Build every trial's RunConfig (when the train layer is importable); each problem once."""
    run_config = _run_config_class()
    if run_config is None:
        return []
    seen: dict[str, None] = {}
    for trial in space.member_trials():
        where = f"config {trial['hp']['config_name']}"
        if trial["model"] in space.model_overrides:
            where += f" (model {trial['model']})"
        try:
            run_config.from_dict(run_config_dict(trial), source=where)
        except ConfigError as err:
            for problem in err.problems or [str(err)]:
                seen.setdefault(f"{where}: {problem}", None)
    return list(seen)


def trial_epochs(trial: dict[str, Any]) -> int | None:
    """The epochs a trial trains: its own ``epochs``, else the RunConfig default (if importable)."""
    flat = run_config_dict(trial)
    if "epochs" in flat:
        return flat["epochs"] if _is_int(flat["epochs"]) else None
    run_config = _run_config_class()
    if run_config is None:
        return None
    try:
        return int(run_config.from_dict(flat).epochs)
    except ConfigError:
        return None


def resolved_max_t(space: SearchSpace) -> int:
    """ASHA's max_t: the space's, else the largest number of epochs of any trained trial."""
    if space.scheduler.max_t is not None:
        return space.scheduler.max_t
    epochs = [trial_epochs(t) for t in space.member_trials() if catalog.is_tuned(t["method"])]
    known = [e for e in epochs if e is not None]
    return max(known) if known else 1


def _check_max_t(space: SearchSpace) -> list[str]:
    if space.scheduler.max_t is not None:
        return []
    trained = [t for t in space.member_trials() if catalog.is_tuned(t["method"])]
    if trained and all(trial_epochs(t) is None for t in trained):
        return ["scheduler.max_t: absent and no epochs in fixed/configs; give one of them"]
    max_t = resolved_max_t(space)
    if trained and max_t < space.scheduler.grace_period:
        return [
            f"scheduler.grace_period: {space.scheduler.grace_period} is above the epochs "
            f"({max_t}); lower it"
        ]
    return []


def describe(space: SearchSpace) -> str:
    """The dry-run text: grid size, axes, configurations, scheduler, resources."""
    trials = space.trials()
    lines = [
        f"search space {space.name!r} ({space.source})",
        f"grid size: {len(trials)} trials"
        + (
            f" ({len(space.member_trials())} configurations; packs of up to {space.pack})"
            if any("pack" in t for t in trials)
            else ""
        ),
        f"  tasks   ({len(space.tasks)}): {', '.join(space.tasks)}",
        f"  seeds   ({len(space.seeds)}): {', '.join(map(str, space.seeds))}",
        f"  models  ({len(space.models)}): {', '.join(space.models)}",
        f"  methods ({len(space.methods)}): {', '.join(space.methods)}",
    ]
    for axis, values in sorted(space.axes.items()):
        lines.append(f"  {axis} ({len(values)}): {', '.join(map(str, values))}")
    for method, configs in space.configs.items():
        lines.append(f"  configs of {method} ({len(configs)}):")
        for c in configs:
            rest = ", ".join(f"{k}={v}" for k, v in c.items() if k != "name")
            lines.append(f"    {c['name']}: {rest}")
    if space.fixed:
        lines.append("  fixed: " + ", ".join(f"{k}={v}" for k, v in space.fixed.items()))
    for model, settings in space.model_overrides.items():
        lines.append(f"  {model}: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    per_method = {m: sum(t["method"] == m for t in trials) for m in space.methods}
    lines.append("  trials per method: " + ", ".join(f"{m}={n}" for m, n in per_method.items()))
    if space.pack:
        unpacked: dict[str, int] = {}
        for t in trials:
            reason = None if "pack" in t else unpacked_reason(t)
            if reason is not None and catalog.is_tuned(t["method"]):
                unpacked[reason] = unpacked.get(reason, 0) + 1
        for reason, n in sorted(unpacked.items()):
            lines.append(f"  unpacked: {n} trials: {reason}")
    groups = {t["group"] for t in trials}
    sch = space.scheduler
    if sch.type == "asha":
        lines.append(
            f"scheduler: ASHA per group ({len(groups)} groups), metric {space.metric} "
            f"({space.mode}), grace_period {sch.grace_period}, reduction_factor "
            f"{sch.reduction_factor}, max_t {resolved_max_t(space)} epochs"
        )
    else:
        lines.append(f"scheduler: none (every trial runs to the end), metric {space.metric}")
    res = ", ".join(f"{k}={v:g}" for k, v in space.resources.items())
    lines.append(
        f"resources per trial: {res}; max_concurrent_trials: "
        f"{space.max_concurrent_trials or 'as resources allow'}; max_failures: {space.max_failures}"
    )
    lines.append(f"storage_path: {space.storage_path or './ray_results (default)'}")
    return "\n".join(lines)
