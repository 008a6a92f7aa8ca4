"""``jola-ray sweep``: validate a search space, run it on Ray Tune, print the comparison.

Imports nothing heavy at module level (``jola-ray --help`` stays instant); Ray loads only when a
sweep runs, never for ``--dry-run``.
"""

from __future__ import annotations

import argparse

EPILOG = """\
SPACE is a YAML file or the name of a shipped space (demo, commonsense, mmlu_pro, gem, lofit,
data_size, model_size); without it the demo runs on a local Ray bound to 127.0.0.1.
The experiment lands in STORAGE/NAME (storage: --storage-path, else the space's storage_path,
else ./ray_results; name: --name, else the space's name). Running the same command again
resumes it. Exit status: 0 all trials finished or were pruned, 1 some trial errored,
2 invalid search space, 3 storage full or unwritable (free space, run it again to resume),
4 experiment in use by another sweep or writable by other users, 130 interrupted with trials
unfinished.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="run a search space on Ray Tune (grouped ASHA, resume, cluster)",
        description="Run a search space (methods x configurations x tasks x seeds x models) as Ray Tune trials, one per grid point.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "space", nargs="?", default="demo", help="YAML file or shipped space name (default: demo)"
    )
    p.add_argument("--storage-path", help="directory or URI (s3://, gs://) for experiments")
    p.add_argument("--name", help="experiment name (default: the space's name)")
    p.add_argument("--address", help="existing Ray cluster (default: RAY_ADDRESS, else local)")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="start the Ray dashboard on 127.0.0.1 and print its URL and how to authenticate",
    )
    p.add_argument(
        "--metrics-export-port",
        type=int,
        metavar="PORT",
        help="export a local Ray's Prometheus metrics on http://127.0.0.1:PORT/metrics",
    )
    p.add_argument(
        "--log-to",
        action="append",
        metavar="TRACKER",
        help="also log trials to tensorboard, wandb or mlflow (Ray Tune's logger callbacks; "
        "comma-separated or repeated; the package must be installed)",
    )
    p.add_argument(
        "--pack",
        nargs="?",
        const=True,
        type=_pack_value,
        metavar="N",
        help="train each group's configurations together in trial packs (the space's `pack` "
        "key: alone, whole groups; N, at most N per pack; 0 or false, unpacked), whatever the "
        "file says; see docs/sweeps.md, Trial packs",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="validate and print the grid; start nothing"
    )
    p.add_argument(
        "--trust-experiment-dir",
        action="store_true",
        help="resume even if other users can write the experiment directory (a resume loads "
        "Ray's pickled state from it)",
    )
    p.set_defaults(func=handle)


def _pack_value(text: str) -> bool | int:
    """``--pack N``: a pack size (an integer >= 0, 0 meaning unpacked), or true/false."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off", "0"):
        return False
    try:
        size = int(low)
    except ValueError:
        size = -1
    if size < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a pack size (an integer >= 1), 0, true or false"
        )
    return size


def handle(args: argparse.Namespace) -> int:
    from jola_ray.sweep.space import describe, load_space

    space = load_space(args.space, pack=args.pack)
    if args.dry_run:
        from jola_ray.sweep.runner import experiment_location

        print(describe(space))
        _, _, exp_path = experiment_location(space, args.storage_path, args.name)
        print(f"experiment directory: {exp_path}")
        return 0
    from jola_ray.sweep.runner import print_and_exit_code, run_sweep

    outcome = run_sweep(
        space,
        storage_path=args.storage_path,
        name=args.name,
        address=args.address,
        dashboard=args.dashboard,
        metrics_export_port=args.metrics_export_port,
        log_to=args.log_to,
        trust_experiment_dir=args.trust_experiment_dir,
    )
    return print_and_exit_code(outcome)
