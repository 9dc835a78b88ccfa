"""`lean data demo|check`: build the demo dataset, or validate a dataset and summarize it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from lean.data.layouts import LAYOUT_NAMES

    parser = subparsers.add_parser(
        "data",
        help="build a demo dataset or check a dataset (FSD50K, ESC-50, UrbanSound8K, DCASE, CSV, "
        "class folders)",
        description="Datasets in any supported layout, detected from the files present: FSD50K "
        "(ground_truth/), ESC-50 (meta/esc50.csv), UrbanSound8K (metadata/UrbanSound8K.csv), "
        "DCASE acoustic scenes (meta.csv + evaluation_setup/), a clips.csv, or one folder per "
        "class. README.md, 'Data: layouts', shows each folder tree.",
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    demo = actions.add_parser(
        "demo",
        help="write a small demo dataset (offline, deterministic), multi- or single-label",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="""Writes a small demo dataset, offline and deterministically.

--task multi-label (default): the FSD50K layout, 13 classes, 1-4 s 16-bit WAV clips,
  about 30 % of them with two classes mixed, split into train/val (dev.csv) and eval
  (eval.csv).
--task single-label: the ESC-50 layout, 10 classes of 5 s 44.1 kHz clips in 5 folds
  (meta/esc50.csv, audio/); each clip is its class sound over noise, some with a quieter
  background sound or a quieter sound of another class.

--classes N (30 to 56, multi-label): a harder FSD50K-layout demo of N classes made only of
  real recordings from Debian packages (General MIDI instruments rendered by fluidsynth
  from fluid-soundfont-gm, espeak-ng speech in several languages and voices,
  sound-theme-freedesktop and sound-icons), 1-5 s clips mixing one to three classes over
  noise; 40 clips per class by default.

Without --classes, five classes use real recordings from the Debian package
sound-theme-freedesktop when it is installed, the rest (or all) are synthesized. The same
seed gives byte-identical files on machines with the same packages. OUT_DIR/README.md names
the sources and their licences.""",
    )
    demo.add_argument("out_dir", metavar="OUT_DIR", help="destination folder (created)")
    demo.add_argument("--task", type=_demo_task, default="multilabel",
                      metavar="{multi-label,single-label}",
                      help="multi-label (FSD50K layout, the default) or single-label (ESC-50 "
                      "layout)")
    demo.add_argument("--classes", type=int, default=None, metavar="N",
                      help="build the harder recorded multi-label demo with N classes (30 to "
                      "56; needs fluidsynth, fluid-soundfont-gm, espeak-ng, "
                      "sound-theme-freedesktop, sound-icons)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.add_argument("--clips-per-class", type=int, default=None, metavar="N",
                      help="multi-label: clips whose first label is each class (default 28: 364 "
                      "clips; with --classes 40); single-label: clips of each class (default 20: 200 clips)")
    demo.add_argument("--force", action="store_true",
                      help="replace a demo dataset built with other arguments")
    demo.add_argument("--json", action="store_true", help="print the manifest as JSON on stdout")
    demo.set_defaults(func=run_demo)

    check = actions.add_parser(
        "check",
        help="validate a dataset and print a summary",
        description="Detects the layout (or takes --layout), checks every row (class known and "
        "consistent, audio file present, no duplicate file, a valid split or fold, the right "
        "number of columns) and prints the layout, the task, how the splits were made, and clip "
        "counts per split, per fold and per class. For a folds layout the splits follow "
        "--fold/--val-fold as in lean train. Exit status 1 when problems were found.",
    )
    check.add_argument("data_dir", metavar="DIR", help="dataset folder")
    check.add_argument("--layout", choices=LAYOUT_NAMES, default=None,
                       help="read DIR in this layout instead of detecting it")
    check.add_argument("--fold", type=int, default=None, metavar="K",
                       help="folds layouts: the fold held out as eval (default the first); "
                       "dcase: the evaluation-setup fold")
    check.add_argument("--val-fold", type=int, default=None, metavar="J",
                       help="folds layouts: the fold used as val (default the one after --fold)")
    check.add_argument("--decode", action="store_true",
                       help="also decode every audio file and report unreadable ones and durations")
    check.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    check.set_defaults(func=run_check)


def _demo_task(text: str) -> str:
    """multi-label / single-label (or the task names multilabel / single_label)."""
    names = {"multi-label": "multilabel", "multilabel": "multilabel",
             "single-label": "single_label", "single_label": "single_label"}
    if text not in names:
        raise argparse.ArgumentTypeError(f"expected multi-label or single-label, not '{text}'")
    return names[text]


def run_demo(args: argparse.Namespace) -> int:
    from lean.data import demo

    if args.classes is not None:
        return _run_recorded_demo(args)
    if args.task == "single_label":
        return _run_single_label_demo(args)
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
    _print_sources(manifest["arguments"]["recorded_classes"])
    return 0


def _run_recorded_demo(args: argparse.Namespace) -> int:
    from lean.data import demo_recorded
    from lean.errors import LeanError

    if args.task != "multilabel":
        raise LeanError("--classes builds a multi-label demo; it does not combine with "
                        "--task single-label")
    clips_per_class = (demo_recorded.DEFAULT_CLIPS_PER_CLASS if args.clips_per_class is None
                       else args.clips_per_class)
    manifest = demo_recorded.build_recorded_demo(args.out_dir, args.classes, seed=args.seed,
                                                 clips_per_class=clips_per_class,
                                                 force=args.force)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    counts, mixed = manifest["clips_per_split"], manifest["clips_per_label_count"]
    print(f"recorded demo dataset in {args.out_dir}: {manifest['num_clips']} clips, "
          f"{manifest['num_classes']} classes (train {counts['train']}, val {counts['val']}, "
          f"eval {counts['eval']}; {mixed['2']} with two classes, {mixed['3']} with three), "
          f"from {', '.join(manifest['packages'])}")
    return 0


def _run_single_label_demo(args: argparse.Namespace) -> int:
    from lean.data import demo_single_label

    clips_per_class = (demo_single_label.DEFAULT_CLIPS_PER_CLASS if args.clips_per_class is None
                       else args.clips_per_class)
    manifest = demo_single_label.build_single_label_demo(
        args.out_dir, seed=args.seed, clips_per_class=clips_per_class, force=args.force)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    print(f"single-label demo dataset in {args.out_dir} (ESC-50 layout): {manifest['num_clips']} "
          f"clips of {manifest['clip_seconds']:g} s, {manifest['num_classes']} classes, "
          f"{len(manifest['clips_per_fold'])} folds of "
          f"{min(manifest['clips_per_fold'].values())} clips or more")
    _print_sources(manifest["arguments"]["recorded_classes"])
    return 0


def _print_sources(recorded: list[str]) -> None:
    from lean.data import demo

    if recorded:
        print(f"real recordings ({demo.SOUND_THEME_PACKAGE}) for: {', '.join(recorded)}")
    else:
        print(f"note: {demo.SOUND_THEME_PACKAGE} is not installed, every class is synthesized "
              f"(apt-get install {demo.SOUND_THEME_PACKAGE} for real recordings)", file=sys.stderr)


def summarize(data_dir: str | Path, layout: str | None = None, fold: int | None = None,
              val_fold: int | None = None, decode: bool = False) -> dict:
    """The `lean data check` summary: layout, task, splits, counts per split, fold and class,
    problems, optional decoding."""
    from lean.data.dataset import SPLITS
    from lean.data.layouts import scan_dataset
    from lean.tasks import MULTILABEL

    scan = scan_dataset(data_dir, layout=layout, fold=fold, val_fold=val_fold)
    splits = [split for split in SPLITS if split != "eval" or scan.has_eval]
    clips = [clip for split in splits for clip in scan.clips_by_split[split]]
    clip_folds = sorted({clip.fold for clip in clips if clip.fold is not None})
    class_counts = {label: {split: 0 for split in splits} for label in scan.labels}
    fold_counts = {label: {str(f): 0 for f in clip_folds} for label in scan.labels}
    for split in splits:
        for clip in scan.clips_by_split[split]:
            for index in clip.label_indices:
                class_counts[scan.labels[index]][split] += 1
                if clip.fold is not None:
                    fold_counts[scan.labels[index]][str(clip.fold)] += 1
    summary = {
        "root": str(scan.root),
        "layout": scan.layout,
        "task": scan.task,
        "num_classes": len(scan.labels),
        "split_rule": scan.split_rule,
        "folds": list(scan.folds),
        "test_fold": scan.test_fold,
        "val_fold": scan.val_fold,
        "clips": {split: len(scan.clips_by_split[split]) for split in splits},
    }
    if scan.task == MULTILABEL:
        summary["multi_label_clips"] = {
            split: sum(1 for clip in scan.clips_by_split[split] if len(clip.label_indices) > 1)
            for split in splits
        }
    if clip_folds:
        summary["clips_per_fold"] = {str(f): sum(1 for clip in clips if clip.fold == f)
                                     for f in clip_folds}
    summary["classes"] = [
        {"label": label, **counts, **({"folds": fold_counts[label]} if clip_folds else {})}
        for label, counts in class_counts.items()
    ]
    summary["classes_without_train_clips"] = [
        label for label, counts in class_counts.items() if counts["train"] == 0
    ]
    summary["problems"] = list(scan.problems)
    if decode:
        summary.update(_decode_all(clips))
    return summary


def _decode_all(clips) -> dict:
    from tqdm import tqdm

    from lean.data.audio import BadAudioError, load_audio

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
    summary = summarize(args.data_dir, layout=args.layout, fold=args.fold, val_fold=args.val_fold,
                        decode=args.decode)
    failed = bool(summary["problems"] or summary.get("bad_audio"))
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 1 if failed else 0


def _format_summary(summary: dict) -> str:
    splits = list(summary["clips"])
    folds = list(summary.get("clips_per_fold", {}))
    lines = [f"dataset {summary['root']}: {summary['layout']} layout, {summary['task']}, "
             f"{summary['num_classes']} classes",
             f"  splits: {summary['split_rule']}"]
    for split in splits:
        multi = summary.get("multi_label_clips")
        note = f" ({multi[split]} multi-label)" if multi else ""
        lines.append(f"  {split:5s} {summary['clips'][split]:7d} clips{note}")
    if folds:
        lines.append("  folds " + ", ".join(f"{f}: {n}" for f, n in summary["clips_per_fold"].items()))
    width = max([len(entry["label"]) for entry in summary["classes"]] + [5])
    columns = [f"{split:>7s}" for split in splits] + [f"{'fold' + f:>7s}" for f in folds]
    lines.append("")
    lines.append(f"  {'class':{width}s} " + " ".join(columns))
    for entry in summary["classes"]:
        counts = [entry[split] for split in splits] + [entry["folds"][f] for f in folds]
        lines.append(f"  {entry['label']:{width}s} " + " ".join(f"{n:7d}" for n in counts))
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
