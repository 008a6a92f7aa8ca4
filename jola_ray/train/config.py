"""The run config: one dataclass tree whose leaf names are YAML keys, CLI flags and result columns.

``RunConfig`` groups the shared leaves by concern (model, data, method, optimisation, schedule,
evaluation, output) and holds every registered method's settings under the method's name
(``jola.temperature``, ``lora.r``: fields of the method module's config dataclass). Every name is
unique across the whole tree, so a flat dict of names (what the sweep passes, what the result
tables hold) maps onto it without ambiguity. Types, bounds, choices and help are each field's
metadata (``jola_ray.settings.setting``), checked by the one ``settings.check_fields``.

Two profiles set the defaults: ``paper`` (what the JoLA paper states: lr 5e-4, one linear warm-up
epoch then exponential decay, AdamW epsilon 1e-6) and ``reference-code`` (what the released JoLA
code runs: lr 5e-3, cosine with 50 warm-up steps, epsilon 1e-8, the ``expon`` gate-weight schedule
and its penalty form). A dict picks a profile with the ``profile`` key; its other keys override.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from jola_ray import settings
from jola_ray.errors import ConfigError
from jola_ray.methods import registry
from jola_ray.settings import setting as _leaf

PROFILES = ("paper", "reference-code")


@dataclass
class ModelConfig:
    model: str = _leaf("tiny-llama", "HF hub id, local path, or tiny-<arch> (a tiny random model)")
    dtype: str = _leaf(
        "fp32", "weights dtype (the paper: fp32 up to 8B)", choices=("fp32", "bf16", "fp16")
    )
    quantization: str = _leaf(
        "none", "none, or nf4 (4-bit bitsandbytes, the 70B run)", choices=("none", "nf4")
    )
    trust_remote_code: bool = _leaf(False, "allow the hub repo's own model code")
    attn_implementation: str = _leaf("sdpa", "eager, sdpa, flash_attention_2, ...")
    device: str = _leaf(
        "auto", "auto (cuda if available), cpu or cuda", choices=("auto", "cpu", "cuda")
    )
    gpu_memory_fraction: float = _leaf(
        1.0, "cap this process's GPU memory (packed trials)", gt=0, le=1
    )


@dataclass
class DataConfig:
    task: str = _leaf("demo_vowel", "task name from the registry (jola-ray tasks)")
    data_dir: str | None = _leaf(
        None, "local data directory (None: the task's default source)", kind="str"
    )
    seed: int = _leaf(42, "seed of sampling, edit initialisation and training")
    train_size: int | None = _leaf(200, "training examples (None: all)", ge=1, optional=True)
    dev_size: int | None = _leaf(200, "dev examples (None: all)", ge=1, optional=True)
    test_size: int | None = _leaf(None, "test examples (None: all)", kind="int", ge=1)
    max_length: int | None = _leaf(
        None,
        "tokens of prompt+answer per training example (None: the longest sampled example, so "
        "none is cut; shorter: long prompts cut from the left, counted in the metrics)",
        kind="int",
        ge=1,
    )
    append_eos: bool = _leaf(
        False,
        "end each training answer with EOS (the reference trains without: outputs are cut at "
        "the first newline)",
    )


@dataclass
class MethodConfig:
    method: str = _leaf(
        registry.DEFAULT,
        "the fine-tuning method (its settings: <method>.<field>)",
        choices=registry.names(),
    )


@dataclass
class OptimConfig:
    lr: float = _leaf(5e-4, "peak learning rate (lr0)", gt=0)
    weight_decay: float = _leaf(0.0, "AdamW weight decay", ge=0)
    adam_epsilon: float = _leaf(1e-6, "AdamW epsilon (paper 1e-6, reference code 1e-8)", gt=0)
    max_grad_norm: float = _leaf(1.0, "gradient clipping norm (0: off)", ge=0)
    batch_size: int = _leaf(8, "training batch size", ge=1)
    grad_accum_steps: int = _leaf(1, "gradient accumulation steps", ge=1)
    epochs: int = _leaf(20, "maximum training epochs", ge=1)
    dpo_beta: float = _leaf(0.5, "DPO beta for preference tasks (LoFiT's default 0.5)", gt=0)


@dataclass
class ScheduleConfig:
    lr_schedule: str = _leaf(
        "exponential",
        "learning-rate schedule after warm-up",
        choices=("exponential", "linear", "cyclic", "adaptive", "cosine", "constant"),
    )
    warmup_epochs: float = _leaf(
        1.0, "linear warm-up length in epochs (added to warmup_steps)", ge=0
    )
    warmup_steps: int = _leaf(0, "linear warm-up length in optimizer steps", ge=0)
    lr_decay_lambda: float = _leaf(
        0.1, "exponential: lr0 * lambda^t * exp(-rate*t), t in epochs", gt=0, le=1
    )
    lr_decay_rate: float = _leaf(0.01, "exponential: the rate in exp(-rate*t)", ge=0)
    lr_cycle_epochs: float = _leaf(2.0, "cyclic: period of one triangle, in epochs", gt=0)
    lr_cycle_min_ratio: float = _leaf(0.1, "cyclic: lowest lr as a fraction of lr0", ge=0, le=1)
    lr_adaptive_factor: float = _leaf(
        0.5, "adaptive: multiply lr by this when dev loss stalls", gt=0, lt=1
    )
    lr_adaptive_patience: int = _leaf(
        0, "adaptive: epochs without dev-loss gain before a cut", ge=0
    )


@dataclass
class EvalConfig:
    patience: int = _leaf(2, "early stopping: epochs without improvement (0: off)", ge=0)
    select_metric: str = _leaf(
        "dev_score",
        "metric that picks the best epoch (dev_loss: the dev loss is computed every epoch)",
        choices=("dev_score", "dev_loss"),
    )
    record_dev_loss: bool = _leaf(
        False,
        "compute the dev loss every epoch for the curves; it is computed anyway when "
        "select_metric is dev_loss or lr_schedule adaptive, and comes free with label_scoring "
        "(otherwise it costs a teacher-forced pass over the dev split)",
    )
    decoding: str = _leaf(
        "greedy", "dev/test decoding", choices=("greedy", "beam", "label_scoring")
    )
    eval_batch_size: int = _leaf(16, "evaluation batch size", ge=1)
    num_beams: int = _leaf(4, "beams for decoding=beam", ge=1)
    max_new_tokens: int | None = _leaf(
        None, "generation length (None: the task's)", kind="int", ge=1
    )


@dataclass
class OutputConfig:
    output_dir: str = _leaf("runs/run", "where checkpoints and the final files go")
    profile: str = _leaf("paper", "defaults: paper or reference-code", choices=PROFILES)
    save_total_limit: int = _leaf(2, "epoch checkpoints kept on disk", ge=1)


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
    "jola.gate_schedule": "expon",
    "jola.penalty": "reference",
    "jola.gate_cyclic_start": 0.1,
    "jola.gate_skip_at_zero": True,
    "select_metric": "dev_loss",
}


@functools.cache
def leaf_fields() -> dict[str, tuple[str, dataclasses.Field]]:
    """Every setting's one name -> (section, dataclass field); built once (do not mutate).

    Shared settings by their bare name (``lr``); a method's as ``<method>.<field>``
    (``jola.temperature``), its section being the method's name.
    """
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            out[f.name] = (section, f)
    for name in registry.names():
        for f in fields(registry.get(name).config):
            out[f"{name}.{f.name}"] = (name, f)
    return out


def profile_defaults(name: str) -> dict[str, Any]:
    """The flat setting -> default dict of a profile (``paper`` or ``reference-code``)."""
    if name not in PROFILES:
        raise ConfigError(f"profile: unknown profile {name!r}; known: {', '.join(PROFILES)}")
    flat = {leaf: settings.default_of(f) for leaf, (_, f) in leaf_fields().items()}
    if name == "reference-code":
        flat.update(_REFERENCE_CODE)
    flat["profile"] = name
    return flat


def _default_methods() -> dict[str, Any]:
    return {name: registry.get(name).config() for name in registry.names()}


@dataclass
class RunConfig:
    """One run: base model, data, method (and every method's settings), optimisation, schedule,
    evaluation, output.

    Sections are named so that no section shares a name with a leaf; ``cfg.lr`` reads the leaf
    ``cfg.optim.lr`` directly (every leaf name is unique) and ``cfg.jola`` is JoLA's settings
    (``cfg.jola.temperature``); ``cfg.method_config`` is the chosen method's.
    """

    base: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    edit: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    evaluation: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    methods: dict[str, Any] = field(default_factory=_default_methods)

    def __getattr__(self, name: str) -> Any:
        # Leaf access by its unique name: cfg.lr is cfg.optim.lr; cfg.jola is JoLA's settings.
        # Only reached for names that are not attributes of RunConfig itself (the sections).
        leaves = leaf_fields()
        if name in leaves:
            return getattr(object.__getattribute__(self, leaves[name][0]), name)
        methods = object.__getattribute__(self, "methods")
        if name in methods:
            return methods[name]
        raise AttributeError(name)

    @property
    def method_config(self) -> Any:
        """The chosen method's settings (a ``registry.get(cfg.method).config`` instance)."""
        return self.methods[self.method]

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None = None, source: str = "config") -> RunConfig:
        """Build and validate a config from a flat, dotted or nested dict (unset: defaults).

        Args:
            d: setting names -> values (``lr``, ``jola.temperature``), section names or method
                names -> dicts of their fields (``{"<method>": {"<field>": value}}``), or a mix.
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
        specs = {name: f for name, (_, f) in leaf_fields().items()}
        checked, found = settings.check_fields(specs, flat)
        values.update(checked)
        problems += found
        problems += _cross_checks(values)
        if problems:
            raise ConfigError(
                f"{source}: {len(problems)} invalid field(s):\n  " + "\n  ".join(problems),
                problems,
            )
        leaves = leaf_fields()
        sections = {name: sec_cls() for name, sec_cls in _SECTIONS.items()}
        per_method: dict[str, dict[str, Any]] = {name: {} for name in registry.names()}
        for key, value in values.items():
            section, f = leaves[key]
            if section in sections:
                setattr(sections[section], key, value)
            else:
                per_method[section][f.name] = value
        methods = {name: registry.get(name).config(**kw) for name, kw in per_method.items()}
        return cls(**sections, methods=methods)

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        """Read a YAML file (flat, dotted or nested), apply ``overrides`` (CLI flags), validate."""
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
            raise ConfigError(f"{path}: " + "; ".join(problems), problems)
        return cls.from_dict({**flat, **(overrides or {})}, source=str(path))

    def to_flat_dict(self) -> dict[str, Any]:
        """Every resolved setting of this run by its one name: the shared ones and the chosen
        method's (``jola.temperature``); what the results carry."""
        out = {
            f.name: getattr(getattr(self, section), f.name)
            for section, sec_cls in _SECTIONS.items()
            for f in fields(sec_cls)
        }
        method = self.method
        for f in fields(self.methods[method]):
            out[f"{method}.{f.name}"] = getattr(self.methods[method], f.name)
        return out

    def to_nested_dict(self) -> dict[str, dict[str, Any]]:
        """Section -> leaf -> value, plus the chosen method's section (the ``config.yaml``)."""
        out = {section: dataclasses.asdict(getattr(self, section)) for section in _SECTIONS}
        out[self.method] = dataclasses.asdict(self.method_config)
        return out

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The resolved config as nested YAML; written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_nested_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text)
        return text


def _flatten(d: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Nested sections and method sections -> one flat dict of setting names."""
    flat: dict[str, Any] = {}
    problems: list[str] = []
    methods = set(registry.names())
    for key, value in d.items():
        if key in _SECTIONS or key in methods:
            if not isinstance(value, dict):
                problems.append(f"{key}: a section must be a mapping, got {value!r}")
                continue
            prefix = f"{key}." if key in methods else ""
            flat.update({f"{prefix}{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat, problems


def _cross_checks(v: dict[str, Any]) -> list[str]:
    """Checks that involve two settings (one setting's bounds live in its metadata)."""
    problems = []
    if v.get("quantization") == "nf4" and v.get("device") == "cpu":
        problems.append("quantization: nf4 needs a CUDA device, but device is 'cpu'")
    return problems
