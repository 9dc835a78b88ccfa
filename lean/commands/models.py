"""`lean models`: the registered model family: task, input, family parameters, parameter counts."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model family with inputs, parameters and parameter counts",
        description="List the registered models with each one's default task and input (sample "
        "rate, channels, window), its family parameters (set them with `lean train --param "
        "KEY=VALUE`) and its total and trainable parameter counts for a given number of classes. "
        "Pretrained backbones (LEAN's YAMNet trunk) are frozen by default, as in the paper, so "
        "they count as non-trainable.",
    )
    parser.add_argument(
        "--num-classes", type=int, default=200, metavar="N",
        help="output classes of every model (default: 200, FSD50K's vocabulary)",
    )
    parser.add_argument(
        "--trainable-backbone", "--finetune-yamnet", dest="trainable_backbone",
        action="store_true", help="count pretrained backbones as trainable (fine-tuning)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print a JSON list of {name, task, input, family_params, params, trainable_params, "
        "description}",
    )
    parser.set_defaults(func=run)


def model_table(num_classes: int, trainable_backbone: bool = False) -> list[dict]:
    """One row per registered model: name, task, input, family_params, params, trainable_params,
    description."""
    import dataclasses
    import logging

    from lean.config import ModelConfig
    from lean.models import registry

    # Counting parameters needs no pretrained weights; silence the random-init warning.
    logging.getLogger("lean.models.yamnet").setLevel(logging.ERROR)
    rows = []
    for name in registry.model_names():
        config = ModelConfig(name=name, num_classes=num_classes,
                             trainable_backbone=trainable_backbone)
        model = registry.build_model(config, load_pretrained=False)
        trainable = sum(int(_size(weight)) for weight in model.trainable_weights)
        rows.append(
            {
                "name": name,
                "task": config.task,
                "input": dataclasses.asdict(config.input),
                "family_params": dataclasses.asdict(config.params),
                "params": int(model.count_params()),
                "trainable_params": trainable,
                "description": registry.describe(name),
            }
        )
    return rows


def _size(weight) -> int:
    size = 1
    for dim in weight.shape:
        size *= int(dim)
    return size


def _input_text(spec: dict) -> str:
    channels = "mono" if spec["channels"] == 1 else f"{spec['channels']} ch"
    return f"{spec['window_seconds']:g} s {spec['sample_rate'] / 1000:g} kHz {channels}"


def run(args: argparse.Namespace) -> int:
    from lean.errors import LeanError

    if args.num_classes < 1:
        raise LeanError(f"--num-classes must be at least 1, got {args.num_classes}")
    rows = model_table(args.num_classes, args.trainable_backbone)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    inputs = [_input_text(row["input"]) for row in rows]
    input_width = max(len(text) for text in inputs)
    print(f"{'model':<{width}}  {'task':<12}  {'input':<{input_width}}  {'params':>10}  "
          f"{'trainable':>10}  description")
    for row, input_text in zip(rows, inputs):
        print(
            f"{row['name']:<{width}}  {row['task']:<12}  {input_text:<{input_width}}  "
            f"{row['params']:>10,}  {row['trainable_params']:>10,}  {row['description']}"
        )
    return 0
