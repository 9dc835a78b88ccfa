"""`lean models`: the registered model family with parameter counts and descriptions."""

from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the model family with parameter counts",
        description="List the registered models (LEAN family, arXiv 2305.12712) with their total "
        "and trainable parameter counts for a given number of classes. The YAMNet trunk is "
        "frozen (as in the paper), so it counts as non-trainable.",
    )
    parser.add_argument(
        "--num-classes", type=int, default=200, metavar="N",
        help="output classes of every model (default: 200, FSD50K's vocabulary)",
    )
    parser.add_argument(
        "--finetune-yamnet", action="store_true",
        help="count the YAMNet trunk as trainable (fine-tuning)",
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print a JSON list of {name, params, trainable_params, description}",
    )
    parser.set_defaults(func=run)


def model_table(num_classes: int, finetune_yamnet: bool = False) -> list[dict]:
    """One row per registered model: name, params, trainable_params, description."""
    import logging

    from lean.config import ModelConfig
    from lean.models import registry

    # Counting parameters needs no pretrained weights; silence the random-init warning.
    logging.getLogger("lean.models.yamnet").setLevel(logging.ERROR)
    rows = []
    for name in registry.model_names():
        config = ModelConfig(name=name, num_classes=num_classes, finetune_yamnet=finetune_yamnet)
        model = registry.build_model(config, load_pretrained=False)
        trainable = sum(int(_size(weight)) for weight in model.trainable_weights)
        rows.append(
            {
                "name": name,
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


def run(args: argparse.Namespace) -> int:
    from lean.errors import LeanError

    if args.num_classes < 1:
        raise LeanError(f"--num-classes must be at least 1, got {args.num_classes}")
    rows = model_table(args.num_classes, args.finetune_yamnet)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(row["name"]) for row in rows)
    print(f"{'model':<{width}}  {'params':>10}  {'trainable':>10}  description")
    for row in rows:
        print(
            f"{row['name']:<{width}}  {row['params']:>10,}  {row['trainable_params']:>10,}  "
            f"{row['description']}"
        )
    return 0
