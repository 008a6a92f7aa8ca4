"""Experiment directories -> pandas -> the paper's tables, plots and compute ledger.

Reads files only (pandas, pyarrow, matplotlib): no torch, no Ray, no jola_ray imports. The
heavy modules load on first use, so ``analysis.commands`` stays cheap for ``jola-ray --help``.

    from analysis import render_report, load_experiments, select_configs
    print(render_report(["~/ray_results/demo"], out_dir="report", fmt="md"))
"""

from analysis.errors import ExperimentDirError

_LAZY = {
    "render_report": "analysis.report",
    "build_report": "analysis.report",
    "load_experiments": "analysis.load",
    "load_experiment": "analysis.load",
    "select_configs": "analysis.select",
    "summarise": "analysis.select",
    "paper_tables": "analysis.tables",
    "ledger": "analysis.ledger",
    "status_counts": "analysis.ledger",
}

__all__ = ["ExperimentDirError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
