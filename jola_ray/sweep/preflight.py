"""Checks a sweep makes before Ray starts: the space file, its models and metric, and whether an
experiment directory is safe to resume from.

Nothing here imports Ray or torch, so ``jola-ray sweep --dry-run`` runs every check too.

- ``read_space_yaml``: the YAML of a space, refusing duplicate keys (YAML keeps the last one
  silently) with both lines named, and a directory given as the space.
- ``check_models``: ``tiny-<arch>`` against the known tiny models, a local path must be a
  directory holding ``config.json``, a hub id must be well-formed and, where a local cache holds
  it or the hub is reachable (``HF_HUB_OFFLINE`` unset), exist.
- ``check_metric``: the metric ASHA and Ray compare must be one every result of the trainable
  carries (Ray stops the whole sweep at the first result without it).
- ``check_experiment_permissions``: resuming unpickles Ray's ``tuner.pkl`` and experiment state
  (cloudpickle inside the JSON); refuse when other users can write them (docs/cluster.md).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path
from typing import Any

from jola_ray.errors import ConfigError, ExperimentRefusedError

# Metrics every per-epoch result of jola_ray.train.run carries (the task's own dev_<metric>
# come from the task registry). test_* arrive only in the final result, so Ray cannot compare on
# them.
EPOCH_METRICS = ("dev_score", "dev_loss", "train_loss", "train_penalty", "open_gate_fraction")
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
# Files of an experiment directory that a resume unpickles.
PICKLED = ("tuner.pkl", "experiment_state-", "searcher-state-", "basic-variant-state-")
TRUST_FLAG = "--trust-experiment-dir"


# --- the space file ----------------------------------------------------------------------


def space_path_problem(path: Path) -> str | None:
    """A message when ``path`` (a space given as a path) is a directory, else None."""
    if path.is_dir():
        found = sorted(p.name for p in path.glob("*.y*ml"))[:5]
        hint = f"; it holds {', '.join(found)}" if found else ""
        return f"search space {str(path)!r} is a directory, not a YAML file{hint}"
    return None


def read_space_yaml(path: Path) -> Any:
    """Parse a space's YAML; a key given twice in one mapping is a ConfigError naming both lines.

    Raises:
        ConfigError: the file is a directory, is not YAML, or repeats a key.
    """
    import yaml

    src = str(path)
    problem = space_path_problem(path)
    if problem:
        raise ConfigError(problem)
    duplicates: list[str] = []

    class _Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.setdefault(key, line)
            except TypeError:  # an unhashable key: SafeLoader refuses it itself
                continue
            if first != line:
                duplicates.append(f"key {key!r} at line {line} repeats line {first}")
        return loader.construct_mapping(node, deep=deep)

    _Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        raw = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise ConfigError(f"{src}: not valid YAML: {err}") from None
    if duplicates:
        raise ConfigError(
            f"{src}: duplicate keys (YAML would keep the last one silently): "
            + "; ".join(duplicates),
            problems=duplicates,
        )
    return raw


# --- models and metric ---------------------------------------------------------------------


def check_models(models) -> list[str]:
    """One problem per model spec that cannot load (see the module docstring)."""
    from jola_ray.tiny import TINY_PREFIX, TINY_SPECS

    problems = []
    for spec in models:
        if spec.startswith(TINY_PREFIX) and not Path(spec).exists():
            arch = spec[len(TINY_PREFIX) :]
            if arch not in TINY_SPECS:
                close = difflib.get_close_matches(arch, TINY_SPECS, n=2)
                hint = (
                    f" (did you mean {', '.join(TINY_PREFIX + c for c in close)}?)" if close else ""
                )
                known = ", ".join(TINY_PREFIX + a for a in TINY_SPECS)
                problems.append(f"models: unknown tiny model {spec!r}{hint}; known: {known}")
            continue
        path = Path(spec).expanduser()
        looks_local = spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1
        if path.exists() or looks_local:
            if not path.is_dir():
                problems.append(f"models: {spec!r}: no such local model directory")
            elif not (path / "config.json").is_file():
                problems.append(f"models: {spec!r}: the directory holds no config.json")
            continue
        if not HUB_ID.match(spec):
            problems.append(
                f"models: {spec!r} is neither a local directory, a tiny-<arch> nor a hub id "
                "(owner/name)"
            )
            continue
        missing = _hub_model_missing(spec)
        if missing:
            problems.append(f"models: {spec!r}: {missing}")
    return problems


def _hub_model_missing(repo_id: str) -> str | None:
    """Why a well-formed hub id cannot resolve, where that can be known without guessing:
    a cache holding it answers yes; offline with no cache entry, nothing is known (the trial
    will say); online, the hub answers (network trouble is not the space's fault)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
            return None
    except Exception:  # a malformed cache or id: leave it to the trial
        return None
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return None
    try:
        from huggingface_hub import model_info
        from huggingface_hub.utils import GatedRepoError, RepositoryNotFoundError
    except ImportError:
        return None
    try:
        model_info(repo_id, timeout=10)
    except GatedRepoError:
        return None  # exists; access is the trial's credentials' business
    except RepositoryNotFoundError:
        return "no such model on the hub (and no local directory of that name)"
    except Exception:  # hub unreachable: cannot tell
        return None
    return None


def check_metric(metric: str, tasks) -> list[str]:
    """A problem when ``metric`` is not in every per-epoch result of the trials of ``tasks``."""
    known = set(EPOCH_METRICS)
    try:
        from jola_ray.data import get_task

        per_task = []
        for name in tasks:
            try:
                per_task.append({f"dev_{m}" for m in get_task(name).metrics})
            except Exception:  # unknown tasks are reported by the task check
                continue
        if per_task:
            known |= set.intersection(*per_task)
    except ImportError:
        pass
    if metric in known:
        return []
    close = difflib.get_close_matches(metric, sorted(known), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    why = " (test metrics arrive only at the end of a trial)" if metric.startswith("test_") else ""
    return [
        f"metric: {metric!r} is not reported by the trials{why}{hint}; "
        f"reported every epoch: {', '.join(sorted(known))}"
    ]


# --- the experiment directory --------------------------------------------------------------


def check_experiment_permissions(exp_path: str, trust: bool = False) -> None:
    """Refuse to resume from a local experiment directory other users can write to.

    A resume unpickles ``tuner.pkl`` and the experiment state: whoever can write them can run
    code as the user who resumes. URIs (s3://, gs://) are not checked here: their access is the
    bucket's policy (docs/cluster.md).

    Raises:
        ExperimentRefusedError: naming the file and its mode, and the way to override.
    """
    if trust or "://" in exp_path:
        return
    root = Path(exp_path)
    paths = [root] + sorted(p for p in root.iterdir() if p.name.startswith(PICKLED))
    me = os.getuid()
    for path in paths:
        try:
            st = path.stat()
        except OSError:
            continue
        writable_by_others = st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
        foreign = st.st_uid not in (me, 0)
        if writable_by_others or foreign:
            who = (
                f"owned by uid {st.st_uid}"
                if foreign
                else f"mode {stat.filemode(st.st_mode)}: group or others can write it"
            )
            raise ExperimentRefusedError(
                f"{path} is {who}. Resuming loads pickles from {exp_path} (Ray's tuner.pkl and "
                "experiment state), so anyone who can write there could run code as you. Make "
                f"it yours alone (chmod -R go-w {exp_path}), or, if you trust every user who can "
                f"write it, pass {TRUST_FLAG} (see docs/cluster.md)"
            )
