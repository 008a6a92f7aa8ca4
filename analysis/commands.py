"""``jola-ray report EXPERIMENT_DIR [...]``: the paper's tables, plots and ledger of a sweep."""

from __future__ import annotations

import sys

FORMATS = ("md", "tex", "csv")


def register(subparsers) -> None:
    """Add the ``report`` subcommand (nothing heavy is imported until it runs)."""
    parser = subparsers.add_parser(
        "report",
        help="tables, plots and compute ledger of one or more experiment directories",
        description=(
            "Read Ray Tune experiment directories (local paths or s3:// gs:// URIs), select the "
            "best configuration per (method, model, task, seed) on dev, average test metrics over "
            "seeds, and write the paper's tables (Markdown, LaTeX, CSV), the trials and epochs "
            "tables (Parquet and CSV) and plots."
        ),
    )
    parser.add_argument(
        "exp_dirs",
        nargs="+",
        metavar="EXPERIMENT_DIR",
        help="experiment directory (STORAGE/NAME of a sweep), or several to pool",
    )
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=FORMATS,
        default="md",
        help="format of the printed report, every section: md (Markdown), tex (a standalone "
        "LaTeX document, booktabs), csv (one numeric CSV per table) (default md)",
    )
    parser.add_argument(
        "--out", default=None, help="output directory (default: EXPERIMENT_DIR/report)"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the figures (faster)")
    parser.set_defaults(func=handle)


def handle(args) -> int:
    """Print the report; a missing, empty or foreign directory prints ``error: ...`` (exit 2)."""
    from analysis.errors import ExperimentDirError
    from analysis.report import render_report

    try:
        text = render_report(args.exp_dirs, out_dir=args.out, fmt=args.fmt, plots=not args.no_plots)
    except ExperimentDirError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(text)
    return 0
