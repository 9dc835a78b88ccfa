"""`lean data demo|check`: build the demo dataset, or validate a dataset and summarize it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="build the demo dataset or check a dataset in the FSD50K layout",
        description="Datasets in the FSD50K layout: ground_truth/{dev,eval,vocabulary}.csv "
        "(or FSD50K.ground_truth/), audio in dev_audio/ and eval_audio/.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    demo = actions.add_parser(
        "demo",
        help="write a small multi-label demo dataset (offline, deterministic)",
        description="Writes a small multi-label dataset in the FSD50K layout: 13 classes, 1-4 s "
        "16-bit WAV clips, about 30 % of them with two classes mixed, split into train/val "
        "(dev.csv) and eval (eval.csv). Five classes use real recordings from the Debian package "
        "sound-theme-freedesktop when it is installed, the rest (or all) are synthesized. "
        "The same seed gives byte-identical files on machines with the same packages. "
        "OUT_DIR/README.md names the sources and their licences.",
    )
    demo.add_argument("out_dir", metavar="OUT_DIR", help="destination folder (created)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--clips-per-class", type=int, default=None, metavar="N",
                      help="clips whose first label is each class (default 28: 364 clips)")
    demo.add_argument("--force", action="store_true",
                      help="replace a demo dataset built with other arguments")
    demo.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    demo.set_defaults(func=run_demo)

    check = actions.add_parser(
        "check",
        help="validate a dataset and print a summary",
        description="Reads ground truth and vocabulary, checks every row (labels in the "
        "vocabulary, audio file present, unique fnames, split train|val) and prints clip counts "
        "per split and per class. Exit status 1 when problems were found.",
    )
    check.add_argument("data_dir", metavar="DIR", help="dataset folder")
    check.add_argument("--decode", action="store_true",
                       help="also decode every audio file and report unreadable ones and durations")
    check.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    check.set_defaults(func=run_check)


def run_demo(args: argparse.Namespace) -> int:
    from lean.data import demo

    clips_per_class = demo.DEFAULT_CLIPS_PER_CLASS if args.clips_per_class is None else args.clips_per_class
    manifest = demo.build_demo_dataset(args.out_dir, seed=args.seed, clips_per_class=clips_per_class,
                                       force=args.force)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    counts = manifest["clips_per_split"]
    print(f"demo dataset in {args.out_dir}: {manifest['num_clips']} clips, {manifest['num_classes']} "
          f"classes (train {counts['train']}, val {counts['val']}, eval {counts['eval']}; "
          f"{manifest['multi_label_clips']} with two classes)")
    recorded = manifest["arguments"]["recorded_classes"]
    if recorded:
        print(f"real recordings ({demo.SOUND_THEME_PACKAGE}) for: {', '.join(recorded)}")
    else:
        print(f"note: {demo.SOUND_THEME_PACKAGE} is not installed, every class is synthesized "
              f"(apt-get install {demo.SOUND_THEME_PACKAGE} for real recordings)", file=sys.stderr)
    return 0


def summarize(data_dir: str | Path, decode: bool = False) -> dict:
    """The `lean data check` summary: counts per split and class, problems, optional decoding."""
    from lean.data.fsd50k import SPLITS, scan_dataset

    scan = scan_dataset(data_dir)
    splits = [split for split in SPLITS if split != "eval" or scan.has_eval]
    class_counts = {label: {split: 0 for split in splits} for label in scan.labels}
    summary = {
        "root": str(scan.root),
        "num_classes": len(scan.labels),
        "clips": {split: len(scan.clips_by_split[split]) for split in splits},
        "multi_label_clips": {
            split: sum(1 for clip in scan.clips_by_split[split] if len(clip.label_indices) > 1)
            for split in splits
        },
        "classes": [],
        "problems": list(scan.problems),
    }
    for split in splits:
        for clip in scan.clips_by_split[split]:
            for index in clip.label_indices:
                class_counts[scan.labels[index]][split] += 1
    summary["classes"] = [{"label": label, **counts} for label, counts in class_counts.items()]
    summary["classes_without_train_clips"] = [
        label for label, counts in class_counts.items() if counts["train"] == 0
    ]
    if decode:
        summary.update(_decode_all(scan, splits))
    return summary


def _decode_all(scan, splits) -> dict:
    from tqdm import tqdm

    from lean.data.audio import BadAudioError, load_audio

    clips = [clip for split in splits for clip in scan.clips_by_split[split]]
    seconds = []
    bad = []
    for clip in tqdm(clips, desc="decoding", unit="file"):
        try:
            seconds.append(load_audio(clip.path).shape[0] / 16000)
        except BadAudioError as error:
            bad.append(str(error))
    return {
        "bad_audio": bad,
        "total_seconds": round(float(sum(seconds)), 3),
        "min_seconds": round(float(min(seconds)), 3) if seconds else None,
        "max_seconds": round(float(max(seconds)), 3) if seconds else None,
    }


def run_check(args: argparse.Namespace) -> int:
    summary = summarize(args.data_dir, decode=args.decode)
    failed = bool(summary["problems"] or summary.get("bad_audio"))
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 1 if failed else 0


def _format_summary(summary: dict) -> str:
    splits = list(summary["clips"])
    lines = [f"dataset {summary['root']}: {summary['num_classes']} classes"]
    for split in splits:
        lines.append(f"  {split:5s} {summary['clips'][split]:7d} clips "
                     f"({summary['multi_label_clips'][split]} multi-label)")
    width = max([len(entry["label"]) for entry in summary["classes"]] + [5])
    lines.append("")
    lines.append(f"  {'class':{width}s} " + " ".join(f"{split:>7s}" for split in splits))
    for entry in summary["classes"]:
        lines.append(f"  {entry['label']:{width}s} " + " ".join(f"{entry[split]:7d}" for split in splits))
    if summary["classes_without_train_clips"]:
        lines.append(f"classes without train clips: {', '.join(summary['classes_without_train_clips'])}")
    if "total_seconds" in summary:
        lines.append(f"audio: {summary['total_seconds']:.1f} s in total, clips "
                     f"{summary['min_seconds']}-{summary['max_seconds']} s")
        for message in summary["bad_audio"]:
            lines.append(f"bad audio: {message}")
    if summary["problems"]:
        lines.append(f"{len(summary['problems'])} problems:")
        lines.extend(f"  {problem}" for problem in summary["problems"])
    else:
        lines.append("no problems found")
    return "\n".join(lines)
