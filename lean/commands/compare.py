"""`lean compare`: per-class AP of two `lean eval` results, as in the paper's Table II."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare two `lean eval` JSON results class by class (paper's Table II)",
        description=(
            "Count the classes whose AP in B is higher than in A, and higher by at least 5, 10 "
            "and 20 % relative ((AP_B - AP_A) / AP_A), over the classes scored in both; list the "
            "largest gains and losses by class."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("a", type=Path, metavar="A.json", help="baseline evaluation")
    parser.add_argument("b", type=Path, metavar="B.json", help="evaluation compared with A")
    parser.add_argument("--top", type=int, default=10, help="gains and losses to list")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.set_defaults(func=run)


def _read(path: Path) -> dict:
    from lean.errors import LeanError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LeanError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LeanError(f"{path}: not JSON ({error})") from None


def format_table(comparison: dict) -> str:
    def relative(row):
        return "new" if row["relative"] is None else f"{row['relative'] * 100:+.1f} %"

    a, b = comparison["a"], comparison["b"]
    n = comparison["classes_compared"]
    def heading(name, evaluation):
        score = "" if evaluation["mAP"] is None else f"  mAP {evaluation['mAP']:.4f}"
        return f"{name}: {evaluation['model']} [{evaluation['split']}]{score}"

    lines = [
        heading("A", a),
        heading("B", b),
        "",
        f"classes compared (scored in both)       {n}",
        f"classes B improves over A               {comparison['improved']}",
    ]
    for threshold, count in comparison["improved_by_at_least"].items():
        lines.append(f"  by at least {threshold:>4} (relative AP)     {count}")
    lines.append(f"classes B is worse on                   {comparison['worsened']}")
    for title, key in (("largest gains", "largest_gains"), ("largest losses", "largest_losses")):
        if comparison[key]:
            lines += ["", f"{title}:  AP A -> AP B  (relative)"]
            lines += [
                f"  {row['label']:<32} {row['ap_a']:.3f} -> {row['ap_b']:.3f}  ({relative(row)})"
                for row in comparison[key]
            ]
    if comparison["only_in_a"] or comparison["only_in_b"]:
        lines += ["", f"not compared: {len(comparison['only_in_a'])} classes only in A, "
                      f"{len(comparison['only_in_b'])} only in B"]
    return "\n".join(lines)


def run(args) -> int:
    from lean.evaluate import compare_evaluations

    comparison = compare_evaluations(_read(args.a), _read(args.b), top=args.top)
    if args.json:
        json.dump(comparison, sys.stdout, indent=2)
        print()
    else:
        print(format_table(comparison))
    return 0
