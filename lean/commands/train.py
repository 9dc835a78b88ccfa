"""`lean train`: train a model of the family on a dataset of any layout (resumable)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.command_line import (
    add_data_arguments,
    data_config_from_args,
    input_spec,
    positive_float,
    positive_int,
)
from lean.config import ModelConfig, RunConfig, TrainConfig
from lean.distribute import STRATEGY_NAMES, DistributionConfig
from lean.tasks import TASKS
from lean.training.options import add_arguments as add_refinement_arguments
from lean.training.options import check_train_config, train_config_values

# The default family member (building a ModelConfig here would import TensorFlow for --help).
DEFAULT_MODEL = "lean"


def register(subparsers) -> None:
    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a model of the family on a dataset (any layout)",
        description=(
            "Train one model of the family with Keras fit on windows of the model's input "
            "length (`lean models` lists each model's input) cut from the train split. The "
            "task follows the dataset: FSD50K-layout data trains a multilabel model (sigmoid "
            "outputs, BCE, best checkpoint by validation PR-AUC), the single-label layouts "
            "(ESC-50, UrbanSound8K, DCASE scenes, a clips CSV, one folder per class) a "
            "single_label one (softmax, cross-entropy, best by validation accuracy); --task "
            "overrides. Every epoch end is checkpointed atomically: after a crash or kill, "
            "rerun the same command to resume from the last completed epoch. On a GPU it "
            "trains with mixed precision, and across all visible GPUs with MirroredStrategy "
            "(select GPUs with CUDA_VISIBLE_DEVICES; --batch-size is the global batch); "
            "--strategy multi-worker trains on several machines described by TF_CONFIG."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (any layout)")
    parser.add_argument("--out", required=True, type=Path, help="run directory to create or resume")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="family member (see `lean models`)")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="set a family parameter (repeatable; `lean models --json` lists each "
                        "model's parameters and defaults; nested ones as frontend.mel_bands=80)")
    parser.add_argument("--input", type=input_spec, default=None, metavar="RATE:CHANNELS:SECONDS",
                        help="the model's input (e.g. 16000:1:2.0; default: the model's own, "
                        "`lean models` lists it): sample rate, channels, window length")
    parser.add_argument("--task", choices=tuple(TASKS), default=None,
                        help="multilabel or single_label (default: what the dataset's layout is)")
    add_data_arguments(parser)
    parser.add_argument("--epochs", type=positive_int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size)
    parser.add_argument("--lr", type=positive_float, default=defaults.learning_rate,
                        help="learning rate (the peak of --lr-schedule and --warmup)")
    parser.add_argument("--yamnet-weights", type=Path, default=None,
                        help="official yamnet.h5 (or TF Hub SavedModel dir) for a model with a "
                        "YAMNet trunk (the param yamnet_weights); without it the trunk starts random")
    parser.add_argument("--trainable-backbone", "--finetune-yamnet", dest="trainable_backbone",
                        action="store_true",
                        help="train the pretrained backbone too (LEAN: fine-tune the YAMNet "
                        "trunk, which the paper keeps frozen)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of weight init and of the per-epoch window shuffle")
    parser.add_argument("--on-bad-audio", choices=("skip", "fail"), default=defaults.on_bad_audio,
                        help="skip: list unreadable audio in RUN_DIR/skipped_files.txt; fail: stop")
    parser.add_argument("--no-mixed-precision", action="store_true",
                        help="train in float32 on a GPU (CPU training is always float32)")
    parser.add_argument("--no-multi-gpu", action="store_true",
                        help="with --strategy auto: use one GPU even when several are visible")
    parser.add_argument("--strategy", choices=STRATEGY_NAMES, default="auto",
                        help="auto: MirroredStrategy over several visible GPUs, else one "
                        "device; mirrored: MirroredStrategy over this machine's GPUs; "
                        "multi-worker: MultiWorkerMirroredStrategy over the machines of "
                        "TF_CONFIG (run the same command on each; the chief, worker 0, writes "
                        "--out); one-device: one GPU or the CPU")
    parser.add_argument("--peer-timeout", type=positive_float,
                        default=DistributionConfig.peer_timeout, metavar="SECONDS",
                        help="multi-worker: how long to wait for every worker of TF_CONFIG "
                        "before stopping with the ones that did not answer")
    parser.add_argument("--max-windows-per-epoch", type=positive_int, default=None,
                        help="train each epoch on this many shuffled windows instead of all")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="decoded-audio cache (default: $LEAN_CACHE_DIR, else "
                        "~/.cache/lean/audio)")
    parser.add_argument("--json", action="store_true",
                        help="print the final training state as JSON on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_refinement_arguments(parser)
    parser.set_defaults(func=run)


def model_config_from_args(args, task: str) -> ModelConfig:
    """The ModelConfig that --model, --param, --yamnet-weights and --trainable-backbone ask for."""
    from lean.errors import LeanError
    from lean.models.registry import entry, parse_param_overrides, param_keys

    family = entry(args.model)
    assignments = list(args.param)
    if args.yamnet_weights is not None:
        if "yamnet_weights" not in param_keys(family.params):
            raise LeanError(f"--yamnet-weights: model '{args.model}' has no YAMNet trunk")
        if not args.yamnet_weights.exists():
            raise LeanError(f"{args.yamnet_weights}: YAMNet weights not found")
        assignments.append(f"yamnet_weights={args.yamnet_weights.absolute()}")
    params = parse_param_overrides(args.model, assignments)
    return ModelConfig(name=args.model, task=task, input=args.input, params=params,
                       trainable_backbone=args.trainable_backbone)


def run(args) -> int:
    from lean.train import resolve_dataset, train

    data = data_config_from_args(args)
    # Malformed refinement options fail here, before the dataset is looked at.
    train_config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        seed=args.seed, mixed_precision=not args.no_mixed_precision,
        multi_gpu=not args.no_multi_gpu, on_bad_audio=args.on_bad_audio,
        **train_config_values(args),
    )
    # The task follows the dataset's layout unless --task says otherwise.
    task = args.task
    if task is None:
        task = resolve_dataset(RunConfig(data=data)).task
    check_train_config(train_config, task)
    config = RunConfig(model=model_config_from_args(args, task), train=train_config, data=data)
    state = train(config, args.out, cache_dir=args.cache_dir,
                  max_windows_per_epoch=args.max_windows_per_epoch,
                  progress=not args.no_progress,
                  distribution=DistributionConfig(args.strategy, args.peer_timeout))
    if args.json:
        json.dump(state, sys.stdout, indent=2)
        print()
    return 0
