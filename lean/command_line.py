"""What the three CLIs (lean, lean-export, lean-bench) share: the runner that turns a LeanError
into one line, the quiet TensorFlow start-up, and argument types and groups."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lean.errors import LeanError
from lean.native_log import filter_tensorflow_startup

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


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def input_spec(text: str):
    """RATE:CHANNELS:SECONDS (e.g. 16000:2:2.5) as an InputSpec (argparse type)."""
    from lean.config import InputSpec

    try:
        rate, channels, seconds = text.split(":")
        return InputSpec(int(rate), int(channels), float(seconds))
    except (ValueError, LeanError):
        raise argparse.ArgumentTypeError(
            f"expected RATE:CHANNELS:SECONDS with positive values (e.g. 16000:1:1.0), not {text}"
        ) from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--layout, --fold and --val-fold: which layout a dataset folder is and which folds
    become eval and val (folds layouts: ESC-50, UrbanSound8K, a folds CSV)."""
    from lean.data import LAYOUT_NAMES

    parser.add_argument("--layout", choices=LAYOUT_NAMES, default=None,
                        help="the dataset's folder layout (default: detected from its files)")
    parser.add_argument("--fold", type=positive_int, default=None, metavar="K",
                        help="folds layouts: hold fold K out as the eval split (default: the "
                        "first fold)")
    parser.add_argument("--val-fold", type=positive_int, default=None, metavar="J",
                        help="folds layouts: validate on fold J (default: the fold after --fold)")


def data_config_from_args(args):
    """The DataConfig of --data, --layout, --fold and --val-fold."""
    from lean.config import DataConfig

    return DataConfig(dir=str(Path(args.data).absolute()), layout=args.layout, fold=args.fold,
                      val_fold=args.val_fold)


__all__ = [
    "add_data_arguments",
    "data_config_from_args",
    "positive_float",
    "positive_int",
    "quiet_tensorflow",
    "run_cli",
]
