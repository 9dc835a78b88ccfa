"""`lean svm`: an SVM back-end on a trained run's penultimate features (papers 002 and 003)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lean.command_line import positive_float


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "svm",
        help="replace a run's head by an SVM trained on its penultimate features",
        description=(
            "Train a scikit-learn SVM on the penultimate features (the input of the `logits` "
            "layer) of the run's un-augmented training windows, features standardised, with "
            "Platt-scaled probabilities fitted on cross-validated decision values (papers 003 "
            "and 002). The result is a run directory that `lean eval` and `lean tag` use like "
            "any other. A linear SVM (one-vs-rest, paper 003's C = 0.1) is folded into the "
            "network's Dense head, so `lean-export` exports it as it exports the original head; "
            "an RBF SVM keeps its support vectors in OUT/svm.joblib and runs on the host only. "
            "OUT/svm.json reports the validation score of the network's head and of the SVM."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a finished lean train run")
    parser.add_argument("--kernel", choices=("linear", "rbf"), default="linear",
                        help="linear: folded into the Keras head (exportable); rbf: host only")
    parser.add_argument("--C", type=positive_float, default=0.1, dest="C",
                        help="the SVM's regularisation C (paper 003: 0.1)")
    parser.add_argument("--out", type=Path, default=None, metavar="RUN_DIR_SVM",
                        help="the SVM run's directory (default: RUN_DIR_svm_KERNEL beside RUN_DIR)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the dataset (default: the one RUN_DIR was trained on)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="decoded-audio cache (default: $LEAN_CACHE_DIR, else "
                        "~/.cache/lean/audio)")
    parser.add_argument("--json", action="store_true", help="print svm.json on stdout")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from lean.training.svm import train_svm_run

    report = train_svm_run(args.run_dir, args.out, kernel=args.kernel, C=args.C,
                           data_dir=args.data, cache_dir=args.cache_dir,
                           progress=not args.no_progress)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        val = report["val"]
        where = "exportable with lean-export" if report["exportable"] else "host only"
        print(f"{report['kernel']} SVM (C {report['C']:g}) on {report['train_windows']} training "
              f"windows, {report['feature_dim']}-d features ({where}); val {report['metric']} "
              f"over {val['clips']} clips: network head {val['network']:.4f}, SVM "
              f"{val['svm']:.4f}")
    return 0
