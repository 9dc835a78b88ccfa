"""`lean train`: train a model of the family on an FSD50K-layout dataset (resumable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.config import ModelConfig, RunConfig, TrainConfig


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def register(subparsers) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a model on an FSD50K-layout dataset",
        description=(
            "Train one model of the family with Keras fit on 1 s windows of the train split; "
            "validation PR-AUC on the val split after every epoch picks RUN_DIR/best.keras. "
            "Every epoch end is checkpointed atomically: after a crash or kill, rerun the same "
            "command to resume from the last completed epoch. On a GPU it trains with "
            "mixed precision, and across all visible GPUs with MirroredStrategy (select GPUs "
            "with CUDA_VISIBLE_DEVICES; --batch-size is the global batch)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (FSD50K layout)")
    parser.add_argument("--out", required=True, type=Path, help="run directory to create or resume")
    parser.add_argument("--model", default=ModelConfig().name,
                        help="family member (see `lean models`)")
    parser.add_argument("--epochs", type=_positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=_positive_int, default=defaults.batch_size)
    parser.add_argument("--lr", type=_positive_float, default=defaults.learning_rate,
                        help="Adam learning rate")
    parser.add_argument("--yamnet-weights", type=Path, default=None,
                        help="official yamnet.h5 (or TF Hub SavedModel dir) for the YAMNet trunk; "
                        "without it the trunk starts random")
    parser.add_argument("--finetune-yamnet", action="store_true",
                        help="train the YAMNet trunk too (the paper keeps it frozen)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of weight init and of the per-epoch window shuffle")
    parser.add_argument("--on-bad-audio", choices=("skip", "fail"), default=defaults.on_bad_audio,
                        help="skip: list unreadable audio in RUN_DIR/skipped_files.txt; fail: stop")
    parser.add_argument("--no-mixed-precision", action="store_true",
                        help="train in float32 on a GPU (CPU training is always float32)")
    parser.add_argument("--no-multi-gpu", action="store_true",
                        help="use one GPU even when several are visible")
    parser.add_argument("--max-windows-per-epoch", type=_positive_int, default=None,
                        help="train each epoch on this many shuffled windows instead of all")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="decoded-audio cache (default: $LEAN_CACHE_DIR, else "
                        "~/.cache/lean/audio)")
    parser.add_argument("--json", action="store_true",
                        help="print the final training state as JSON on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lean.errors import LeanError
    from lean.models.registry import model_names
    from lean.train import train

    if args.model not in model_names():
        raise LeanError(f"unknown model '{args.model}': expected one of {', '.join(model_names())}")
    weights = None
    if args.yamnet_weights is not None:
        if not args.yamnet_weights.exists():
            raise LeanError(f"{args.yamnet_weights}: YAMNet weights not found")
        weights = str(args.yamnet_weights.absolute())
    config = RunConfig(
        model=ModelConfig(name=args.model, finetune_yamnet=args.finetune_yamnet,
                          yamnet_weights=weights),
        train=TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
            seed=args.seed, mixed_precision=not args.no_mixed_precision,
            multi_gpu=not args.no_multi_gpu, on_bad_audio=args.on_bad_audio,
        ),
    )
    state = train(config, args.data, args.out, cache_dir=args.cache_dir,
                  max_windows_per_epoch=args.max_windows_per_epoch,
                  progress=not args.no_progress)
    if args.json:
        json.dump(state, sys.stdout, indent=2)
        print()
    return 0
