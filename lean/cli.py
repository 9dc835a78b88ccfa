"""The `lean` command line: one subcommand module per verb, in `lean.commands`."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from lean.errors import LeanError
from lean.native_log import filter_tensorflow_startup

# Subcommand modules, in the order `lean --help` lists them. Each defines
# `register(subparsers)`, which adds its parser and sets `func(args) -> int`.
COMMANDS = ("models", "data", "train", "eval", "compare", "tag")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lean",
        description="Train, evaluate and use LEAN audio taggers (arXiv 2305.12712).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"lean.commands.{name}").register(subparsers)
    return parser


def quiet_tensorflow() -> None:
    """TensorFlow's C++ start-up chatter hides our own output; keep errors only.

    Without an NVIDIA driver, TensorFlow's GPU build logs a failed cuInit at every start, as
    an error; there it keeps fatal messages only (Python exceptions still surface). TensorFlow
    itself ignores the level for what it logs while it is imported, so that import is filtered.
    """
    no_gpu_driver = not os.path.exists("/proc/driver/nvidia/version")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3" if no_gpu_driver else "2")
    filter_tensorflow_startup()


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parses argv and runs the chosen command; a LeanError becomes one line on stderr, exit 2."""
    quiet_tensorflow()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LeanError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
