"""`jola-ray tasks` and `jola-ray data show`, through the same error handling as the CLI."""

import argparse
from pathlib import Path

import pytest

from jola_ray.data import commands, list_tasks
from jola_ray.errors import JolaRayError

FIXTURES = Path(__file__).parent / "fixtures"


def run_cli(argv, capsys):
    """Parse and dispatch like jola_ray.cli.main (error: message, exit code, no traceback)."""
    parser = argparse.ArgumentParser(prog="jola-ray")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except JolaRayError as err:
        print(f"error: {err}")
        code = err.exit_code
    out = capsys.readouterr().out
    return code, out


def test_tasks_lists_one_line_per_task(capsys):
    code, out = run_cli(["tasks"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and len(lines) == 1 + len(list_tasks())
    boolq = next(line for line in lines if line.startswith("boolq "))
    assert boolq.split()[:3] == ["boolq", "commonsense", "accuracy"] and "true/false" in boolq
    xsum = next(line for line in lines if line.startswith("xsum "))
    assert "bleu (bleu,rougeL,rouge1,rouge2,chrf)" in xsum
    assert any(line.startswith("truthfulqa_fold1 ") and "mc1" in line for line in lines)


def test_data_show_prints_example_and_sizes(capsys):
    code, out = run_cli(
        [
            "data",
            "show",
            "boolq",
            "--data-dir",
            str(FIXTURES),
            "--train-size",
            "3",
            "--dev-size",
            "2",
        ],
        capsys,
    )
    assert code == 0
    assert "seed 42: train 3, dev 2, test 3" in out
    assert "### Response:\n--- answer ---\n" in out
    assert "labels: true/false" in out
    code, out = run_cli(["data", "show", "truthfulqa", "--data-dir", str(FIXTURES)], capsys)
    assert code == 0 and "chosen:" in out and "rejected:" in out and "best: 0" in out


def test_data_show_errors_are_messages(capsys, tmp_path):
    code, out = run_cli(["data", "show", "arc_x"], capsys)
    assert code == 2 and out.startswith("error: unknown task 'arc_x'") and "arc_c" in out
    code, out = run_cli(["data", "show", "clutrr", "--data-dir", str(tmp_path)], capsys)
    assert code == 1 and "error: no data for this task" in out and "val.json" in out
    code, out = run_cli(["data", "show", "demo_vowel", "--train-size", "0"], capsys)
    assert code == 1 and "train_size must be a positive integer" in out


def test_data_without_action_prints_usage(capsys):
    code, out = run_cli(["data"], capsys)
    assert code == 2 and "show" in out


@pytest.mark.parametrize("name", ["demo_majority", "demo_vowel", "demo_parity", "demo_last_digit"])
def test_data_show_demo(capsys, name):
    code, out = run_cli(["data", "show", name, "--seed", "3"], capsys)
    assert code == 0 and "seed 3: train 128, dev 64, test 100" in out
