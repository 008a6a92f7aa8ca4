"""The settings ``jola-ray evaluate`` scores with: a run's own, unless a flag says otherwise.

Re-scoring a run's edit must see the examples and decoding the run saw: the same model, task,
data, sampling seed and sizes (dev is carved from train with ``train_size``), decoding, beams,
new tokens and batch size. ``evaluation_settings`` takes, key by key, the flag the user gave,
else the value in the run's ``config.yaml`` (found beside the ``--edit`` file or in the folder
above it: a run writes ``OUT/edit.safetensors``, ``OUT/final/edit.safetensors`` and a
``config.yaml`` beside each), else the training defaults the caller passes (so ``evaluate``
and ``train`` share their defaults). Plain YAML is read here: the evaluation layer does not
import the training layer's config class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from jola_ray.errors import ConfigError

# The run-config leaves that decide what is scored and how.
EVAL_KEYS = (
    "model",
    "task",
    "data_dir",
    "seed",
    "train_size",
    "dev_size",
    "test_size",
    "decoding",
    "num_beams",
    "max_new_tokens",
    "eval_batch_size",
    "dtype",
    "quantization",
    "attn_implementation",
    "trust_remote_code",
)
RUN_CONFIG = "config.yaml"


@dataclass
class EvalSettings:
    """The resolved settings and where each came from (``flag``, the config path, ``default``)."""

    values: dict
    origin: dict = field(default_factory=dict)
    run_config: Path | None = None

    def describe(self) -> str:
        """One line for the user: which settings the run's config.yaml supplied."""
        if self.run_config is None:
            return "settings: flags and defaults (no run config.yaml beside the edit)"
        taken = [k for k in EVAL_KEYS if self.origin.get(k) == str(self.run_config)]
        shown = ", ".join(f"{k}={self.values[k]}" for k in taken)
        return f"settings from {self.run_config}: {shown}"


def run_config_of(edit: str | Path | None) -> Path | None:
    """The ``config.yaml`` of the run an edit file belongs to (beside it, else one folder up)."""
    if edit is None:
        return None
    folder = Path(edit).resolve().parent
    for candidate in (folder / RUN_CONFIG, folder.parent / RUN_CONFIG):
        if candidate.is_file():
            return candidate
    return None


def read_run_settings(path: Path) -> dict:
    """The evaluation keys of a run's resolved ``config.yaml`` (nested sections or flat)."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the run's config: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of run settings, got {type(data).__name__}")
    flat: dict = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return {k: flat[k] for k in EVAL_KEYS if k in flat}


def evaluation_settings(flags: dict, edit: str | Path | None, defaults: dict) -> EvalSettings:
    """Per key of ``EVAL_KEYS`` (and any other key in ``flags``): the flag given, else the run's
    ``config.yaml`` value when ``edit`` points into a run, else ``defaults``."""
    run_config = run_config_of(edit)
    from_run = read_run_settings(run_config) if run_config is not None else {}
    values, origin = {}, {}
    for key in dict.fromkeys([*EVAL_KEYS, *flags]):
        if key in flags:
            values[key], origin[key] = flags[key], "flag"
        elif key in from_run:
            values[key], origin[key] = from_run[key], str(run_config)
        elif key in defaults:
            values[key], origin[key] = defaults[key], "default"
    # model and task never come from the defaults: a flag or the run names them
    missing = [k for k in ("model", "task") if origin.get(k) in (None, "default")]
    if missing:
        need = " and ".join(f"--{k}" for k in missing)
        raise ConfigError(
            f"evaluate: give {need} (or --edit pointing into a run folder, whose config.yaml "
            "names them)"
        )
    return EvalSettings(values, origin, run_config)
