"""Ray Tune sweeps over tasks x seeds x models x methods x hyperparameter configurations.

The only package of jola_ray that imports Ray (lazily: importing this package does not).

    from jola_ray.sweep import load_space, run_sweep
    space = load_space("demo")            # a shipped name or a YAML path; ConfigError if invalid
    outcome = run_sweep(space)            # STORAGE/NAME/, one trial dir per grid point
    outcome.statuses, outcome.exit_code

Modules: ``space`` (YAML -> validated SearchSpace -> trial dicts, handed to Tune as one
``tune.grid_search``), ``scheduler`` (ASHA per group), ``trainable`` (one trial = one run),
``cluster`` (local loopback Ray or an existing cluster), ``progress`` (terminal lines),
``runner`` (Tuner build/restore, outcome), ``commands`` (the ``jola-ray sweep`` subcommand).
"""

# What a trial runs unless told otherwise (dotted paths, resolved inside the worker): the run
# with the worker process's resident, which keeps the frozen model and data between trials.
DEFAULT_RUN = "jola_ray.train.resident.run_in_worker"
DEFAULT_MAKE_CONFIG = "jola_ray.train.RunConfig.from_dict"
DEFAULT_RUN_PACK = "jola_ray.train.resident.run_pack_in_worker"  # a pack trial (``pack:``)


def __getattr__(name: str):
    lazy = {
        "load_space": "jola_ray.sweep.space",
        "parse_space": "jola_ray.sweep.space",
        "SearchSpace": "jola_ray.sweep.space",
        "describe": "jola_ray.sweep.space",
        "run_sweep": "jola_ray.sweep.runner",
        "SweepOutcome": "jola_ray.sweep.runner",
        "GroupedASHA": "jola_ray.sweep.scheduler",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'jola_ray.sweep' has no attribute {name!r}")
