"""The `lean` command line: one subcommand module per verb, in `lean.commands`."""

from __future__ import annotations

import argparse
import importlib
import sys

from lean.command_line import run_cli

# Subcommand modules, in the order `lean --help` lists them. Each defines
# `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = ("models", "data", "train", "svm", "eval", "compare", "tag")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lean",
        description="Train, evaluate and use on-device audio classifiers: LEAN (arXiv 2305.12712) "
        "and the related model families (`lean models`).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lean.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
