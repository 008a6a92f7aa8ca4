"""The ``jola-ray`` command line: one subcommand per layer, wired here.

Each layer registers its own subcommands through ``register(subparsers)`` in its
``commands`` module; those modules import nothing heavy at import time, so ``jola-ray --help``
answers at once. A ``JolaRayError`` is printed as ``error: ...`` without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from jola_ray import __version__
from jola_ray.errors import JolaRayError

_COMMAND_MODULES = (
    "jola_ray.methods.commands",
    "jola_ray.data.commands",
    "jola_ray.evaluation.commands",
    "jola_ray.train.commands",
    "jola_ray.sweep.commands",
    "analysis.commands",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jola-ray",
        description="Fine-tuning method studies (JoLA, LoFiT, LoRA, ...) on frozen LMs with Ray Tune.",
    )
    parser.add_argument("--version", action="version", version=f"jola-ray {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except JolaRayError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early: not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
