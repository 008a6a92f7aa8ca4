"""The run config: one dataclass tree whose leaf names are YAML keys, CLI flags and result columns.

``RunConfig`` groups the leaves by concern (model, data, method, optimisation, schedule,
evaluation, output). Every leaf name is unique across the whole tree, so a flat dict of leaf
names (what the sweep passes, what the result tables hold) maps onto it without ambiguity.

Two profiles set the defaults: ``paper`` (what the JoLA paper states: lr 5e-4, one linear warm-up
epoch then exponential decay, AdamW epsilon 1e-6) and ``reference-code`` (what the released JoLA
code runs: lr 5e-3, cosine with 50 warm-up steps, epsilon 1e-8, the ``expon`` gate-weight schedule
and its penalty form). A dict picks a profile with the ``profile`` key; its other keys override.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jola_ray.errors import ConfigError

PROFILES = ("paper", "reference-code")


def _leaf(default: Any, help: str, choices: tuple | None = None, kind: str | None = None) -> Any:
    """A config leaf: its default, a one-line meaning (CLI help, docs) and its allowed values."""
    meta = {"help": help, "choices": choices, "kind": kind}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    model: str = _leaf("tiny-llama", "HF hub id, local path, or tiny-<arch> (a tiny random model)")
    dtype: str = _leaf("fp32", "weights dtype (the paper: fp32 up to 8B)", ("fp32", "bf16", "fp16"))
    quantization: str = _leaf(
        "none", "none, or nf4 (4-bit bitsandbytes, the 70B run)", ("none", "nf4")
    )
    trust_remote_code: bool = _leaf(False, "allow the hub repo's own model code")
    attn_implementation: str = _leaf("sdpa", "eager, sdpa, flash_attention_2, ...")
    device: str = _leaf("auto", "auto (cuda if available), cpu or cuda", ("auto", "cpu", "cuda"))
    gpu_memory_fraction: float = _leaf(
        1.0, "cap this process's GPU memory (packed trials), 0 < f <= 1"
    )


@dataclass
class DataConfig:
    task: str = _leaf("demo_vowel", "task name from the registry (jola-ray tasks)")
    data_dir: str | None = _leaf(None, "local data directory (None: the task's default source)")
    seed: int = _leaf(42, "seed of sampling, edit initialisation and training")
    train_size: int | None = _leaf(200, "training examples (None: all)")
    dev_size: int | None = _leaf(200, "dev examples (None: all)")
    test_size: int | None = _leaf(None, "test examples (None: all)")
    max_length: int | None = _leaf(
        None,
        "tokens of prompt+answer per training example (None: the longest sampled example, so "
        "none is cut; shorter: long prompts cut from the left, counted in the metrics)",
    )
    append_eos: bool = _leaf(
        False,
        "end each training answer with EOS (the reference trains without: outputs are cut at "
        "the first newline)",
    )


@dataclass
class MethodConfig:
    method: str = _leaf(
        "jola", "jola, lofit (two stages) or zero_shot", ("jola", "lofit", "zero_shot")
    )
    gate_temperature: float = _leaf(0.33, "Hard-Concrete gate temperature (> 0)")
    gate_lambda: Any = _leaf(
        "auto", "weight of the gate penalty: a float >= 0 or 'auto'", kind="auto_float"
    )
    penalty_form: str = _leaf(
        "paper",
        "paper (expected L0) or reference (the code's per-layer normalised form)",
        ("paper", "reference"),
    )
    gate_schedule: str = _leaf(
        "fixed",
        "gate-penalty weight schedule (reference form)",
        ("fixed", "expon", "linear", "cyclic"),
    )
    gate_cyclic_start: float | None = _leaf(
        None, "cyclic gate schedule's weight at step 0 (None: the formula's 0.5; reference 0.1)"
    )
    gate_skip_at_zero: bool = _leaf(
        False, "no gate penalty on steps whose weight lambda_t is 0 (the reference code's guard)"
    )
    edit_components: str = _leaf(
        "both", "which JoLA vectors are edited", ("both", "additive", "multiplicative")
    )
    edit_layers: list[int] | None = _leaf(None, "layers to edit (None: all)", kind="int_list")
    per_example_gates: bool = _leaf(False, "sample gate noise per example instead of per batch")
    lofit_top_k: int | None = _leaf(None, "LoFiT heads kept after stage 1 (None: 10% of all heads)")
    lofit_l1_lambda: float = _leaf(5e-4, "LoFiT stage-1 L1 weight on the scaling vectors")
    lofit_stage1_lr: float | None = _leaf(None, "LoFiT stage-1 learning rate (None: lr)")
    dpo_beta: float = _leaf(0.5, "DPO beta for preference tasks (LoFiT's default 0.5)")


@dataclass
class OptimConfig:
    lr: float = _leaf(5e-4, "peak learning rate (lr0)")
    weight_decay: float = _leaf(0.0, "AdamW weight decay")
    adam_epsilon: float = _leaf(1e-6, "AdamW epsilon (paper 1e-6, reference code 1e-8)")
    max_grad_norm: float = _leaf(1.0, "gradient clipping norm (0: off)")
    batch_size: int = _leaf(8, "training batch size")
    grad_accum_steps: int = _leaf(1, "gradient accumulation steps")
    epochs: int = _leaf(20, "maximum training epochs")


@dataclass
class ScheduleConfig:
    lr_schedule: str = _leaf(
        "exponential",
        "learning-rate schedule after warm-up",
        ("exponential", "linear", "cyclic", "adaptive", "cosine", "constant"),
    )
    warmup_epochs: float = _leaf(1.0, "linear warm-up length in epochs (added to warmup_steps)")
    warmup_steps: int = _leaf(0, "linear warm-up length in optimizer steps")
    lr_decay_lambda: float = _leaf(0.1, "exponential: lr0 * lambda^t * exp(-rate*t), t in epochs")
    lr_decay_rate: float = _leaf(0.01, "exponential: the rate in exp(-rate*t)")
    lr_cycle_epochs: float = _leaf(2.0, "cyclic: period of one triangle, in epochs")
    lr_cycle_min_ratio: float = _leaf(0.1, "cyclic: lowest lr as a fraction of lr0")
    lr_adaptive_factor: float = _leaf(0.5, "adaptive: multiply lr by this when dev loss stalls")
    lr_adaptive_patience: int = _leaf(0, "adaptive: epochs without dev-loss gain before a cut")


@dataclass
class EvalConfig:
    patience: int = _leaf(2, "early stopping: epochs without improvement (0: off)")
    select_metric: str = _leaf(
        "dev_score", "metric that picks the best epoch", ("dev_score", "dev_loss")
    )
    decoding: str = _leaf("greedy", "dev/test decoding", ("greedy", "beam", "label_scoring"))
    eval_batch_size: int = _leaf(16, "evaluation batch size")
    num_beams: int = _leaf(4, "beams for decoding=beam")
    max_new_tokens: int | None = _leaf(None, "generation length (None: the task's)")


@dataclass
class OutputConfig:
    output_dir: str = _leaf("runs/run", "where checkpoints and the final files go")
    profile: str = _leaf("paper", "defaults: paper or reference-code", PROFILES)
    save_total_limit: int = _leaf(2, "epoch checkpoints kept on disk (>= 1)")


_SECTIONS: dict[str, type] = {
    "base": ModelConfig,
    "data": DataConfig,
    "edit": MethodConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "evaluation": EvalConfig,
    "output": OutputConfig,
}

# The reference-code profile: what the released JoLA code runs (reference/jola.md section 5.1).
_REFERENCE_CODE = {
    "lr": 5e-3,
    "lr_schedule": "cosine",
    "warmup_steps": 50,
    "warmup_epochs": 0.0,
    "epochs": 20,
    "adam_epsilon": 1e-8,
    "gate_schedule": "expon",
    "gate_cyclic_start": 0.1,
    "gate_skip_at_zero": True,
    "penalty_form": "reference",
    "select_metric": "dev_loss",
}


@functools.cache
def leaf_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every leaf name -> (section name, dataclass field); built once (do not mutate)."""
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            out[f.name] = (section, f)
    return out


def _field_default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return f.default


def profile_defaults(name: str) -> dict[str, Any]:
    """The flat leaf -> default dict of a profile (``paper`` or ``reference-code``)."""
    if name not in PROFILES:
        raise ConfigError(f"profile: unknown profile {name!r}; known: {', '.join(PROFILES)}")
    flat = {leaf: _field_default(f) for leaf, (_, f) in leaf_fields().items()}
    if name == "reference-code":
        flat.update(_REFERENCE_CODE)
    flat["profile"] = name
    return flat


@dataclass
class RunConfig:
    """One fine-tuning run: base model, data, edit method, optimisation, schedule, evaluation, output.

    Sections are named so that no section shares a name with a leaf; ``cfg.lr`` reads the leaf
    ``cfg.optim.lr`` directly (every leaf name is unique).
    """

    base: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    edit: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __getattr__(self, name: str) -> Any:
        # Leaf access by its unique name: cfg.lr is cfg.optim.lr. Only reached for names that
        # are not attributes of RunConfig itself (the sections).
        leaves = leaf_fields()
        if name in leaves:
            return getattr(object.__getattribute__(self, leaves[name][0]), name)
        raise AttributeError(name)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None, source: str = "config") -> RunConfig:
        """Build and validate a config from a flat or nested dict (unset leaves: profile defaults).

        Args:
            d: leaf names -> values, section names -> dicts of leaves, or a mix.
            source: named in error messages (a file path, "CLI", a trial name).

        Raises:
            ConfigError: listing every unknown, mistyped or invalid field at once.
        """
        flat, problems = _flatten(d or {})
        profile = flat.get("profile", "paper")
        if profile not in PROFILES:
            problems.append(f"profile: {profile!r} is not one of {', '.join(PROFILES)}")
            profile = "paper"
        values = profile_defaults(profile)
        leaves = leaf_fields()
        for key, raw in flat.items():
            if key not in leaves:
                close = difflib.get_close_matches(key, leaves, n=3)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                problems.append(f"{key}: unknown field{hint}")
                continue
            try:
                values[key] = _coerce(key, raw, leaves[key][1], values[key])
            except ValueError as err:
                problems.append(f"{key}: {err}")
        problems += _validate(values)
        if problems:
            raise ConfigError(
                f"{source}: {len(problems)} invalid field(s):\n  " + "\n  ".join(problems),
                problems,
            )
        sections = {name: sec_cls() for name, sec_cls in _SECTIONS.items()}
        for key, value in values.items():
            setattr(sections[leaves[key][0]], key, value)
        return cls(**sections)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Read a YAML file (flat or nested), apply ``overrides`` (e.g. CLI flags), validate."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError as err:
            raise ConfigError(f"{path}: file not found") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
        if not isinstance(data, dict):
            raise ConfigError(
                f"{path}: expected a mapping of field names, got {type(data).__name__}"
            )
        flat, problems = _flatten(data)
        if problems:
            raise ConfigError(f"{path}: " + "; ".join(problems))
        return cls.from_dict({**flat, **(overrides or {})}, source=str(path))

    def to_flat_dict(self) -> dict[str, Any]:
        """Leaf name -> value (the result columns)."""
        return {
            f.name: getattr(getattr(self, section), f.name)
            for section, sec_cls in _SECTIONS.items()
            for f in fields(sec_cls)
        }

    def to_nested_dict(self) -> dict[str, dict[str, Any]]:
        """Section -> leaf -> value (the resolved ``config.yaml``)."""
        return {section: dataclasses.asdict(getattr(self, section)) for section in _SECTIONS}

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The resolved config as nested YAML; written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_nested_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text


def _flatten(d: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Nested sections -> flat leaves; a section given as a non-dict is a problem."""
    flat: dict[str, Any] = {}
    problems: list[str] = []
    for key, value in d.items():
        if key in _SECTIONS:
            if not isinstance(value, dict):
                problems.append(f"{key}: a section must be a mapping, got {value!r}")
                continue
            flat.update(value)
        else:
            flat[key] = value
    return flat, problems


def _coerce(name: str, raw: Any, f: dataclasses.Field, default: Any) -> Any:
    """Convert a YAML/CLI/JSON value to the leaf's type; ValueError says what was wrong."""
    kind = f.metadata.get("kind")
    optional = "None" in str(f.type)
    if raw is None or (optional and isinstance(raw, str) and raw.lower() in ("none", "null")):
        if optional:
            return None
        raise ValueError("may not be empty")
    if kind == "auto_float":
        if isinstance(raw, str) and raw.strip().lower() == "auto":
            return "auto"
        return _to_float(raw)
    if kind == "int_list":
        if isinstance(raw, str):
            raw = [p for p in raw.replace(",", " ").split() if p]
        if isinstance(raw, int) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, (list, tuple)):
            raise ValueError(f"expected a list of layer indices, got {raw!r}")
        return [_to_int(x) for x in raw]
    base = str(f.type).replace(" | None", "")
    if base == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.lower() in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if base == "int":
        return _to_int(raw)
    if base == "float":
        return _to_float(raw)
    if not isinstance(raw, str):
        raise ValueError(f"expected a string, got {raw!r}")
    return raw


def _to_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"expected an integer, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            pass
    raise ValueError(f"expected an integer, got {raw!r}")


def _to_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError(f"expected a number, got {raw!r}")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"must be finite, got {raw!r}")
    return value


def _validate(v: dict[str, Any]) -> list[str]:
    """Value checks over the typed flat dict (types already checked)."""
    problems: list[str] = []
    leaves = leaf_fields()
    for name, (_, f) in leaves.items():
        choices = f.metadata.get("choices")
        if choices and v.get(name) is not None and v[name] not in choices:
            problems.append(f"{name}: {v[name]!r} is not one of {', '.join(choices)}")

    def need(cond: bool, msg: str) -> None:
        if not cond:
            problems.append(msg)

    def num(name: str) -> bool:
        return isinstance(v.get(name), (int, float)) and not isinstance(v.get(name), bool)

    for name in ("lr", "gate_temperature", "adam_epsilon", "dpo_beta"):
        if num(name):
            need(v[name] > 0, f"{name}: must be > 0, got {v[name]}")
    for name in (
        "weight_decay",
        "max_grad_norm",
        "lofit_l1_lambda",
        "warmup_epochs",
        "lr_decay_rate",
    ):
        if num(name):
            need(v[name] >= 0, f"{name}: must be >= 0, got {v[name]}")
    for name in (
        "batch_size",
        "grad_accum_steps",
        "epochs",
        "eval_batch_size",
        "num_beams",
        "max_length",
        "save_total_limit",
    ):
        if num(name):
            need(v[name] >= 1, f"{name}: must be >= 1, got {v[name]}")
    for name in ("warmup_steps", "patience", "lr_adaptive_patience"):
        if num(name):
            need(v[name] >= 0, f"{name}: must be >= 0, got {v[name]}")
    for name in ("train_size", "dev_size", "test_size", "lofit_top_k", "max_new_tokens"):
        if v.get(name) is not None and num(name):
            need(v[name] >= 1, f"{name}: must be >= 1 (or None for all), got {v[name]}")
    if v.get("lofit_stage1_lr") is not None and num("lofit_stage1_lr"):
        need(v["lofit_stage1_lr"] > 0, f"lofit_stage1_lr: must be > 0, got {v['lofit_stage1_lr']}")
    if v.get("gate_cyclic_start") is not None and num("gate_cyclic_start"):
        r = v["gate_cyclic_start"]
        need(0 <= r <= 1, f"gate_cyclic_start: must be in [0, 1] (or None), got {r}")
    if num("gate_lambda"):
        need(v["gate_lambda"] >= 0, f"gate_lambda: must be >= 0 or 'auto', got {v['gate_lambda']}")
    if num("gpu_memory_fraction"):
        frac = v["gpu_memory_fraction"]
        need(0 < frac <= 1, f"gpu_memory_fraction: must be in (0, 1], got {frac}")
    if num("lr_decay_lambda"):
        need(
            0 < v["lr_decay_lambda"] <= 1,
            f"lr_decay_lambda: must be in (0, 1], got {v['lr_decay_lambda']}",
        )
    if num("lr_cycle_epochs"):
        need(v["lr_cycle_epochs"] > 0, f"lr_cycle_epochs: must be > 0, got {v['lr_cycle_epochs']}")
    if num("lr_cycle_min_ratio"):
        r = v["lr_cycle_min_ratio"]
        need(0 <= r <= 1, f"lr_cycle_min_ratio: must be in [0, 1], got {r}")
    if num("lr_adaptive_factor"):
        r = v["lr_adaptive_factor"]
        need(0 < r < 1, f"lr_adaptive_factor: must be in (0, 1), got {r}")
    if isinstance(v.get("edit_layers"), list):
        bad = [x for x in v["edit_layers"] if x < 0]
        need(not bad, f"edit_layers: layer indices must be >= 0, got {bad}")
    if v.get("quantization") == "nf4" and v.get("device") == "cpu":
        problems.append("quantization: nf4 needs a CUDA device, but device is 'cpu'")
    return problems
