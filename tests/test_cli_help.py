"""Every ``jola-ray`` subcommand (at any depth) has a description and every flag has help.

Walks the real parser, so a subcommand or flag added later is checked too. Flags hidden with
``help=argparse.SUPPRESS`` (test injection points) are allowed.
"""

from __future__ import annotations

import argparse
import re

from jola_ray.cli import build_parser


def walk(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name))


def subcommands():
    return [(" ".join(p), sub) for p, sub in walk(build_parser()) if p]


def test_every_subcommand_has_a_description_and_a_one_line_help():
    parser = build_parser()
    found = subcommands()
    assert {"sweep", "report", "train", "tasks", "params", "data show"} <= {n for n, _ in found}
    for name, sub in found:
        assert sub.description and sub.description.strip(), f"jola-ray {name}: no description"
        assert "``" not in sub.description, f"jola-ray {name}: docstring markup in description"
    for _, top in walk(parser):
        for action in top._actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    assert choice.help and "\n" not in choice.help, choice.dest


def test_every_flag_and_argument_has_help():
    missing = []
    for name, sub in subcommands():
        for action in sub._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            if not (action.help and action.help.strip()):
                missing.append(f"jola-ray {name} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, "no help: " + ", ".join(missing)


def test_help_text_says_each_default_once():
    for name, sub in subcommands():
        text = sub.format_help()
        for block in re.split(r"\n(?=  -)", text):
            assert block.lower().count("default") <= 1 or "paper default" in block, (
                f"jola-ray {name}: {block.strip()[:200]}"
            )
        assert "(default: None)" not in text, f"jola-ray {name}"
