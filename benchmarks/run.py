"""Run the speed harness and write the JSON result file and its Markdown summary.

    python -m benchmarks.run --device cpu --shapes tiny [--quick]
    python -m benchmarks.run --device cuda --shapes 1b,8b --out benchmarks/results/h100.json

Sections, in order, per shape: ``train`` (floor, JoLA variants, LoFiT, peak memory), ``eval``
(ms per example per decoding mode), ``packing`` (N processes on one device), ``trial`` (a whole
``jola_ray.train.run`` split into setup, training and evaluation; 1B and tiny only), and once
``sweep`` (a Ray sweep through ``jola_ray.sweep.run_sweep``; on ``--sweep-shape``). The
``train`` section also times the step a trial runs (``train_step.run_trainer_step``: the
trainer's own loss on a collated batch of real prompts with answer-only labels, against the bare
step and the floor on that batch); on ``cpu-small`` the ``trial`` is ``jola-ray train`` with its
defaults, split into phases with the dev evaluation as its own.
``--skip``/``--only`` pick sections, so a GPU session can split the work over several calls
and merge the files with ``python -m benchmarks.report``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

SECTIONS = ("train", "methods", "eval", "packing", "trial", "sweep")
REPO_ROOT = Path(__file__).resolve().parent.parent


def _settings(device: str, quick: bool) -> dict:
    """Step counts and sizes: the anchors' definitions unless ``quick`` (CI smoke)."""
    on_gpu = device.startswith("cuda")
    if quick:
        return {
            "warmup": 1,
            "steps": 2,
            "train_rounds": 1,
            "batch": (2, 64),
            "eval_counts": {
                "beam4_bs1": 2,
                "greedy_bs1": 2,
                "greedy_bs64": 8,
                "label_scoring_bs64": 8,
            },
            "prompt_tokens": 160,
            "packing_levels": {"tiny": [1, 2], "1b": [1, 2], "8b": [1]},
            "packing_seconds": 1.0,
            "packing_warmup": 1,
            "trial": {"train": 16, "dev": 8, "test": 16, "epochs": 2},
            "sweep": {
                "configs": 2,
                "seeds": 1,
                "epochs": 2,
                "steps_per_epoch": 2,
                "levels": [1, 2],
            },
        }
    return {
        "warmup": 3,
        "steps": 10,
        # GPU timings are steady; a shared CPU is not: median of interleaved rounds there
        "train_rounds": 1 if on_gpu else 3,
        "batch": None,  # the shape's own: 8 x 256
        "eval_counts": {
            "beam4_bs1": 16 if on_gpu else 4,
            "greedy_bs1": 16 if on_gpu else 4,
            "greedy_bs64": 256 if on_gpu else 128,
            "label_scoring_bs64": 256 if on_gpu else 128,
        },
        "prompt_tokens": 160,
        "packing_levels": {"tiny": [1, 2, 5, 10], "1b": [1, 2, 5, 10], "8b": [1, 2, 5]},
        "packing_seconds": 10.0 if on_gpu else 5.0,
        "packing_warmup": 3,
        "trial": {"train": 200, "dev": 200, "test": 1000, "epochs": 20},
        "sweep": {
            "configs": 2,
            "seeds": 2,
            "epochs": 3,
            "steps_per_epoch": 25 if on_gpu else 5,
            "levels": [1, 2, 4],
        },
    }


def _versions() -> dict:
    import torch
    import transformers

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.version.cuda,
    }
    for name in ("trl", "ray", "datasets"):
        try:
            out[name] = __import__(name).__version__
        except Exception:
            out[name] = None
    return out


def _git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return proc.stdout.strip() or None
    except Exception:
        return None


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def result_meta(command: str, device: str, quick: bool) -> dict:
    """What a result file says of how it was made: when, the command, the device, the library
    versions, the commit, smoke sizes or not, the torch threads (``benchmarks.report`` reads
    it; ``benchmarks.packing --trainer`` writes it too)."""
    import torch

    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": command,
        "device": device,
        "device_name": _device_name(device),
        "versions": _versions(),
        "git_commit": _git_commit(),
        "quick": quick,
        "torch_threads": torch.get_num_threads(),
    }


def _meta(args, settings: dict) -> dict:
    command = "python -m benchmarks.run " + " ".join(shlex.quote(a) for a in args.argv)
    meta = result_meta(command, args.device, args.quick)
    meta["settings"] = {k: v for k, v in settings.items() if k != "packing_levels"}
    if hasattr(os, "getloadavg"):
        meta["load_average_start"] = list(os.getloadavg())
    return meta


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _record(result: dict, errors: dict, section: str, measure) -> None:
    """``measure()``'s figures into ``result``; a failure is recorded under ``section``."""
    try:
        result.update(measure())
    except Exception as err:
        errors[section] = f"{type(err).__name__}: {err}"[:500]


def run_shape(name: str, args, settings: dict, sections: set[str]) -> dict:
    """Every selected section for one shape; a failing section is recorded, not fatal."""
    import torch

    from benchmarks import decode_speed, method_steps, packing, train_step, trial
    from benchmarks.shapes import build_model, default_dtype, get_shape

    shape = get_shape(name)
    if settings["batch"] is not None:
        shape = replace(shape, batch_size=settings["batch"][0], seq_len=settings["batch"][1])
    result: dict = {"device": args.device, "batch": [shape.batch_size, shape.seq_len]}
    dtype = default_dtype(args.device)
    result["dtype"] = str(dtype).removeprefix("torch.")
    errors: dict[str, str] = {}

    if sections & {"train", "methods", "eval"}:
        t0 = time.perf_counter()
        model, tok = build_model(shape, args.device, dtype)
        result["build_s"] = time.perf_counter() - t0
        if "train" in sections:
            _log(f"{name}: training step (floor, JoLA {args.variants}, LoFiT)")
            _record(
                result,
                errors,
                "train",
                lambda: train_step.run(
                    model,
                    shape,
                    args.device,
                    settings["warmup"],
                    settings["steps"],
                    args.variants,
                    repeats=args.repeats or settings["train_rounds"],
                ),
            )
            _log(f"{name}: the trial's own step (trainer loss, answer-only labels) vs bare")
            _record(
                result,
                errors,
                "trainer_step",
                lambda: train_step.run_trainer_step(
                    model,
                    tok,
                    args.device,
                    settings["warmup"],
                    settings["steps"],
                    repeats=args.repeats or settings["train_rounds"],
                ),
            )
        if "methods" in sections:
            _log(f"{name}: every trained method's step (registry, default settings) vs floor")
            _record(
                result,
                errors,
                "methods",
                lambda: method_steps.run(
                    model, shape, args.device, settings["warmup"], settings["steps"]
                ),
            )
        if "eval" in sections:
            _log(f"{name}: decoding modes {list(settings['eval_counts'])}")
            _record(
                result,
                errors,
                "eval",
                lambda: decode_speed.run(
                    model, tok, args.device, settings["eval_counts"], settings["prompt_tokens"]
                ),
            )
        del model, tok
        gc.collect()  # hooks and the edit hold reference cycles: free the weights now
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

    if "packing" in sections:
        levels = settings["packing_levels"].get(name, [1, 2])
        _log(f"{name}: packing levels {levels}")
        result.update(
            packing.run(
                shape,
                args.device,
                dtype,
                levels,
                settings["packing_warmup"],
                settings["packing_seconds"],
                variant=args.packing_variant,
            )
        )

    if "trial" in sections and name in ("tiny", "1b", "cpu-small"):
        defaults = name == "cpu-small"  # jola-ray train's defaults (the dev-evaluation share)
        _log(f"{name}: whole trial {'jola-ray train defaults' if defaults else settings['trial']}")
        res = trial.run(shape, args.device, **settings["trial"], defaults=defaults)
        if "error" in res:
            errors["trial"] = res["error"]
        else:
            result.update(res)

    if errors:
        result["errors"] = errors
    return result


def run_sweep_section(args, settings: dict) -> dict:
    from benchmarks import sweep_bench

    s = settings["sweep"]
    _log(f"sweep on {args.sweep_shape}: {s}")
    try:
        return sweep_bench.run(
            args.sweep_shape,
            args.device,
            levels=s["levels"],
            configs=s["configs"],
            seeds=s["seeds"],
            epochs=s["epochs"],
            steps_per_epoch=s["steps_per_epoch"],
            batch=settings["batch"],
        )
    except Exception as err:
        return {"error": f"{type(err).__name__}: {err}"[:800]}


def parse_args(argv: list[str]) -> argparse.Namespace:
    from benchmarks.edit_variants import VARIANTS

    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument(
        "--shapes",
        default=None,
        help="comma list of tiny, cpu-small, 1b, 8b (default: tiny on cpu, 1b,8b on cuda)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="JSON result file (default benchmarks/results/<device>-<shapes>.json)",
    )
    p.add_argument("--md", default=None, help="Markdown summary (default: the JSON path with .md)")
    p.add_argument("--quick", action="store_true", help="few steps and small sizes (CI smoke)")
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        help=f"comma list of sections to skip ({', '.join(SECTIONS)}); repeatable",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help="comma list of the only sections to run; repeatable",
    )
    p.add_argument(
        "--variants",
        default=None,
        help=f"JoLA variants to time ({', '.join(VARIANTS)}; default: all on cuda, all but compiled on cpu)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="rounds of the training-step section, median taken (default 3 on cpu, 1 on cuda)",
    )
    p.add_argument("--packing-variant", default="plain", choices=VARIANTS)
    p.add_argument(
        "--sweep-shape",
        default=None,
        help="shape of the sweep section (default 1b on cuda, tiny on cpu)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: 1 on cpu)"
    )
    args = p.parse_args(argv)
    args.argv = argv
    cuda = args.device == "cuda"
    args.shapes = [
        s.strip() for s in (args.shapes or ("1b,8b" if cuda else "tiny")).split(",") if s.strip()
    ]
    variants = args.variants or ("plain,batched,fused,compiled" if cuda else "plain,batched,fused")
    args.variants = [v.strip() for v in variants.split(",") if v.strip()]
    bad = [v for v in args.variants if v not in VARIANTS]
    if bad:
        p.error(f"--variants: unknown {bad}; known: {', '.join(VARIANTS)}")
    only = {s for arg in args.only for s in arg.split(",") if s}
    skip = {s for arg in args.skip for s in arg.split(",") if s}
    bad = sorted((only | skip) - set(SECTIONS))
    if bad:
        p.error(f"unknown section(s) {bad}; known: {', '.join(SECTIONS)}")
    args.sections = (only or set(SECTIONS)) - skip
    from benchmarks.shapes import SHAPES

    bad = [s for s in args.shapes if s not in SHAPES]
    if bad:
        p.error(f"--shapes: unknown {bad}; known: {', '.join(SHAPES)}")
    args.sweep_shape = args.sweep_shape or ("1b" if cuda else "tiny")
    if args.out is None:
        args.out = str(
            REPO_ROOT / "benchmarks" / "results" / f"{args.device}-{'-'.join(args.shapes)}.json"
        )
    if args.md is None:
        args.md = str(Path(args.out).with_suffix(".md"))
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 2
    if args.device == "cpu":
        torch.set_num_threads(args.threads or 1)
    elif args.threads:
        torch.set_num_threads(args.threads)
    settings = _settings(args.device, args.quick)
    started = time.perf_counter()
    result = {"meta": _meta(args, settings), "shapes": {}}
    for name in args.shapes:
        result["shapes"][name] = run_shape(name, args, settings, args.sections)
    if "sweep" in args.sections:
        sweep = run_sweep_section(args, settings)
        result["sweep"] = sweep
    result["meta"]["wall_s"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    from benchmarks.report import render

    Path(args.md).write_text(render([result]))
    _log(f"wrote {out} and {args.md} ({result['meta']['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
