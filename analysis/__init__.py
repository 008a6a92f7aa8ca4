"""Experiment directories -> pandas -> the paper's tables, plots and compute ledger.

Reads files only (pandas, pyarrow, matplotlib): no torch, no Ray; of jola_ray only the
torch-free method catalog (display names, row order, which methods train). The
heavy modules load on first use, so ``analysis.commands`` stays cheap for ``jola-ray --help``;
``dir(analysis)`` lists the public functions all the same.

    from analysis import load_experiments, render_report
    trials, epochs = load_experiments(["~/ray_results/demo"])   # one row per trial / epoch
    print(render_report(["~/ray_results/demo"], fmt="md"))      # also writes EXP/report/

Public surface (docs/analysis.md):

* reading: ``load_experiments`` (one or several directories or URIs -> trials and epochs
  DataFrames), ``load_experiment`` (one), ``read_gates`` (a trial's gates.csv);
* selection: ``select_configs`` (best dev configuration per method, model, task, seed),
  ``summarise`` (mean, std, n over seeds per cell);
* tables: ``paper_tables``, ``axis_tables`` (data/model size), renderers ``to_markdown``,
  ``to_latex``, ``to_csv``;
* accounting: ``status_counts``, ``compute_ledger``, ``asha_effect``;
* plots: ``learning_curves``, ``gate_maps``, ``asha_savings`` (the paper's analyses' figures,
  data and model size among them: ``analysis.study_plots.study_plots``, a submodule's name);
* the whole report: ``build_report`` (frames, tables, files), ``render_report`` (text);
* ``ExperimentDirError``: a missing, empty or foreign directory.
"""

from analysis.errors import ExperimentDirError

_LAZY = {
    "load_experiments": "analysis.load",
    "load_experiment": "analysis.load",
    "read_gates": "analysis.load",
    "select_configs": "analysis.select",
    "summarise": "analysis.select",
    "paper_tables": "analysis.tables",
    "axis_tables": "analysis.tables",
    "to_markdown": "analysis.tables",
    "to_latex": "analysis.tables",
    "to_csv": "analysis.tables",
    "status_counts": "analysis.ledger",
    "compute_ledger": "analysis.ledger",
    "asha_effect": "analysis.ledger",
    "learning_curves": "analysis.plots",
    "gate_maps": "analysis.plots",
    "asha_savings": "analysis.plots",
    "build_report": "analysis.report",
    "render_report": "analysis.report",
}

__all__ = ["ExperimentDirError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
