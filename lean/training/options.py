"""Training-refinement options: parsing, canonical forms and validation, before data is read.

Every option string (`--lr-schedule step:5:0.1`, `--warmup gradual:5`, `--specaugment 15:70`)
is parsed here into a frozen spec, and every combination is checked here, so that a bad value
is one line naming the option and its accepted forms, raised before training opens a file.
Imports neither TensorFlow nor Keras: `lean train --help` and the checks stay fast.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lean.errors import LeanError

OPTIMIZERS = ("adam", "sgd")
WARMUP_MODES = ("replace", "prepend")
SCHEDULE_FORMS = "constant | step:EVERY:FACTOR | cosine"
WARMUP_FORMS = "constant:EPOCHS:LR | gradual:EPOCHS[:START_LR]"
SPECAUGMENT_FORMS = "FREQ:TIME (maximum mask widths in frequency bins and time frames)"
# Paper 000's warmup starts at 1e-5 (and peaks at its lr 0.1).
GRADUAL_WARMUP_START_LR = 1e-5
# Park et al. 2019 (SpecAugment), policy SM: two frequency masks of up to 15 bins, two time masks
# of up to 70 frames, each time mask at most p = 0.2 of the frames.
SPECAUGMENT_DEFAULT = "15:70"
SPECAUGMENT_MASKS = 2
SPECAUGMENT_MAX_TIME_FRACTION = 0.2


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule over the training epochs, before any warmup."""

    kind: str  # constant | step | cosine
    every: int = 0  # step: epochs between two decays
    factor: float = 1.0  # step: multiplier at each decay

    @property
    def text(self) -> str:
        if self.kind == "step":
            return f"step:{self.every}:{_number(self.factor)}"
        return self.kind


@dataclass(frozen=True)
class WarmupSpec:
    """The first `epochs` epochs at a constant `lr`, or rising linearly from `lr` to --lr."""

    kind: str  # constant | gradual
    epochs: int
    lr: float  # constant: the warmup lr; gradual: the lr of the first step

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.epochs}:{_number(self.lr)}"


@dataclass(frozen=True)
class SpecAugmentSpec:
    """Frequency and time masks (Park et al. 2019): widths drawn in [0, max] per mask."""

    freq_width: int
    time_width: int
    freq_masks: int = SPECAUGMENT_MASKS
    time_masks: int = SPECAUGMENT_MASKS
    max_time_fraction: float = SPECAUGMENT_MAX_TIME_FRACTION

    @property
    def text(self) -> str:
        return f"{self.freq_width}:{self.time_width}"


def _number(value: float) -> str:
    """A float's shortest round-tripping text (0.1, 1e-05), ints without a point."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


def _fail(option: str, text: str, reason: str, forms: str) -> LeanError:
    return LeanError(f"{option} {text}: {reason}; accepted forms: {forms}")


def _positive_int(option: str, text: str, part: str, name: str, forms: str) -> int:
    if not part.strip().isdigit() or int(part) == 0:
        raise _fail(option, text, f"{name} must be a positive integer, not {part!r}", forms)
    return int(part)


def _positive_float(option: str, text: str, part: str, name: str, forms: str) -> float:
    try:
        value = float(part)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise _fail(option, text, f"{name} must be a positive number, not {part!r}", forms)
    return value


def parse_lr_schedule(text: str) -> ScheduleSpec:
    """`constant`, `step:EVERY:FACTOR` (lr x FACTOR every EVERY epochs) or `cosine`."""
    option, forms = "--lr-schedule", SCHEDULE_FORMS
    parts = str(text).strip().lower().split(":")
    if parts == ["constant"] or parts == ["cosine"]:
        return ScheduleSpec(parts[0])
    if parts[0] != "step" or len(parts) != 3:
        raise _fail(option, text, "unknown schedule", forms)
    every = _positive_int(option, text, parts[1], "EVERY", forms)
    factor = _positive_float(option, text, parts[2], "FACTOR", forms)
    if factor > 1:
        raise _fail(option, text, f"FACTOR must be at most 1 (a decay), not {parts[2]}", forms)
    return ScheduleSpec("step", every, factor)


def parse_warmup(text: Optional[str]) -> Optional[WarmupSpec]:
    """None / `none`, `constant:EPOCHS:LR` or `gradual:EPOCHS[:START_LR]` (START_LR 1e-5)."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    option, forms = "--warmup", WARMUP_FORMS
    parts = str(text).strip().lower().split(":")
    if parts[0] == "constant" and len(parts) == 3:
        epochs = _positive_int(option, text, parts[1], "EPOCHS", forms)
        return WarmupSpec("constant", epochs, _positive_float(option, text, parts[2], "LR", forms))
    if parts[0] == "gradual" and len(parts) in (2, 3):
        epochs = _positive_int(option, text, parts[1], "EPOCHS", forms)
        start = (_positive_float(option, text, parts[2], "START_LR", forms) if len(parts) == 3
                 else GRADUAL_WARMUP_START_LR)
        return WarmupSpec("gradual", epochs, start)
    raise _fail(option, text, "unknown warmup", forms)


def parse_specaugment(text: Optional[str]) -> Optional[SpecAugmentSpec]:
    """None (off), `default` (Park et al.'s SM policy, 15:70) or `FREQ:TIME`."""
    if text is None:
        return None
    option, forms = "--specaugment", SPECAUGMENT_FORMS
    clean = str(text).strip().lower()
    if clean in ("", "default"):
        clean = SPECAUGMENT_DEFAULT
    parts = clean.split(":")
    if len(parts) != 2:
        raise _fail(option, text, "expected two widths", forms)
    widths = []
    for part, name in zip(parts, ("FREQ", "TIME")):
        if not part.isdigit():
            raise _fail(option, text, f"{name} must be a whole number of "
                        f"{'bins' if name == 'FREQ' else 'frames'}, not {part!r}", forms)
        widths.append(int(part))
    if not any(widths):
        raise _fail(option, text, "both widths are 0, which masks nothing", forms)
    return SpecAugmentSpec(*widths)


def canonical_fields(values: dict) -> dict:
    """The refinement fields of a TrainConfig in canonical form (so config.json compares
    equal however the command line spelled them); raises LeanError on any malformed one."""
    out = dict(values)
    optimizer = str(out["optimizer"]).lower()
    if optimizer not in OPTIMIZERS:
        raise LeanError(f"--optimizer {out['optimizer']}: unknown optimizer; accepted: "
                        f"{' | '.join(OPTIMIZERS)}")
    out["optimizer"] = optimizer
    if not 0 <= out["momentum"] < 1:
        raise LeanError(f"--momentum {out['momentum']}: must lie in [0, 1)")
    if not (out["weight_decay"] >= 0 and math.isfinite(out["weight_decay"])):
        raise LeanError(f"--weight-decay {out['weight_decay']}: must be 0 or positive")
    out["lr_schedule"] = parse_lr_schedule(out["lr_schedule"]).text
    warmup = parse_warmup(out["warmup"])
    out["warmup"] = warmup.text if warmup else None
    if out["warmup_mode"] not in WARMUP_MODES:
        raise LeanError(f"--warmup-mode {out['warmup_mode']}: accepted: {' | '.join(WARMUP_MODES)}")
    if not 0 <= out["label_smoothing"] < 1:
        raise LeanError(f"--label-smoothing {out['label_smoothing']}: EPS must lie in [0, 1)")
    if not (out["mixup_alpha"] >= 0 and math.isfinite(out["mixup_alpha"])):
        raise LeanError(f"--mixup {out['mixup_alpha']}: ALPHA must be positive (0: off)")
    if out["mixup_alpha"] > 0 and out["between_class"]:
        raise LeanError("--mixup and --between-class both mix examples; choose one")
    spec = parse_specaugment(out["specaugment"])
    out["specaugment"] = spec.text if spec else None
    if not (out["kd_temperature"] > 0 and math.isfinite(out["kd_temperature"])):
        raise LeanError(f"--kd-temperature {out['kd_temperature']}: T must be positive")
    if not 0 <= out["kd_lambda"] <= 1:
        raise LeanError(f"--kd-lambda {out['kd_lambda']}: L must lie in [0, 1]")
    return out


def check_train_config(train, task: str, num_classes: Optional[int] = None) -> None:
    """The checks that need more than one field: the warmup against --epochs and --lr, and the
    options against the task (and the class count, once the labels are known).

    Args:
        train: a `lean.config.TrainConfig` (its fields are already canonical).
        task: "multilabel" or "single_label".
        num_classes: the dataset's label count, when known.
    """
    warmup = parse_warmup(train.warmup)
    if warmup is not None:
        if warmup.epochs >= train.epochs:
            raise LeanError(f"--warmup {train.warmup}: {warmup.epochs} warmup epochs leave none "
                            f"of the --epochs {train.epochs} for the schedule")
        if warmup.kind == "gradual" and warmup.lr >= train.learning_rate:
            raise LeanError(f"--warmup {train.warmup}: START_LR {warmup.lr:g} must be below "
                            f"--lr {train.learning_rate:g}; accepted forms: {WARMUP_FORMS}")
    if train.between_class and task != "single_label":
        raise LeanError("--between-class mixes two examples of different classes: it needs "
                        f"single-label data, and this run's task is {task}")
    if num_classes is not None and task == "single_label" and train.label_smoothing > 0:
        if num_classes < 2:
            raise LeanError("--label-smoothing needs at least 2 classes")
        if train.label_smoothing > (num_classes - 1) / num_classes:
            raise LeanError(f"--label-smoothing {train.label_smoothing:g}: above (K-1)/K = "
                            f"{(num_classes - 1) / num_classes:.3g} the true class would get "
                            "less than the others")


def check_teacher(teacher_dir: str | Path, labels, task: str, input_spec=None):
    """The teacher run of --teacher: a finished run with the same labels (in order) and task,
    and (when given) the same input spec, since it scores the student's training windows.

    Reads only its config.json and labels.txt. Returns its `RunConfig`.
    """
    from lean.run import LABELS_FILE, read_labels_file, read_run_config

    teacher_dir = Path(teacher_dir)
    try:
        config = read_run_config(teacher_dir)
    except LeanError as error:
        raise LeanError(f"--teacher {error}") from None
    teacher_labels = tuple(read_labels_file(teacher_dir / LABELS_FILE))
    if config.model.task != task:
        raise LeanError(f"--teacher {teacher_dir}: trained for the {config.model.task} task, "
                        f"this run is {task}")
    if teacher_labels != tuple(labels):
        missing = sorted(set(labels) - set(teacher_labels))
        extra = sorted(set(teacher_labels) - set(labels))
        detail = (f"missing {', '.join(missing[:3])}" if missing else
                  f"extra {', '.join(extra[:3])}" if extra else "the same labels in another order")
        raise LeanError(f"--teacher {teacher_dir}: its {len(teacher_labels)} labels are not this "
                        f"dataset's {len(labels)} ({detail})")
    if input_spec is not None and config.model.input != input_spec:
        theirs, ours = config.model.input, input_spec
        raise LeanError(f"--teacher {teacher_dir}: takes {theirs.window_seconds:g} s windows at "
                        f"{theirs.sample_rate} Hz, {theirs.channels} channel(s); this model "
                        f"{ours.window_seconds:g} s at {ours.sample_rate} Hz, {ours.channels}")
    return config


LABEL_SMOOTHING_HELP = (
    "smooth the targets with EPS (paper 000): single-label, the true class gets 1-EPS and each "
    "of the K-1 others EPS/(K-1); multi-label, each class y(1-EPS)+EPS/2. Keras' own "
    "label_smoothing=EPS' gives EPS'/K to the other classes, so EPS' = EPS*K/(K-1) "
    "(paper's EPS 0.1 with K=2 is Keras 0.2). 0: off")


def add_arguments(parser) -> None:
    """Adds the refinement options of `lean train` to an argparse parser (defaults: off)."""
    from lean.config import TrainConfig

    defaults = TrainConfig()
    group = parser.add_argument_group(
        "training refinements",
        "each is stored in RUN_DIR/config.json, so rerunning the same command resumes with the "
        "same schedule position and the same mixtures")
    group.add_argument("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer,
                       help="adam, or sgd with --momentum")
    group.add_argument("--momentum", type=float, default=defaults.momentum,
                       help="SGD momentum (sgd only)")
    group.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                       help="decoupled weight decay W as Keras' optimizers apply it (each step "
                       "subtracts lr * W * weight); 0: none")
    group.add_argument("--lr-schedule", default=defaults.lr_schedule, metavar="SCHEDULE",
                       help=f"{SCHEDULE_FORMS}, computed per optimizer step: step:5:0.1 "
                       "divides --lr by 10 every 5 epochs (paper 000); cosine decays it to 0 "
                       "at the last step. Logged per epoch (lr_start, lr_end) in history.csv "
                       "and TensorBoard")
    group.add_argument("--warmup", default=defaults.warmup, metavar="WARMUP",
                       help=f"{WARMUP_FORMS}: the first EPOCHS epochs at LR, or rising linearly "
                       "per step from START_LR (default 1e-5, paper 000) to --lr (Goyal et al.)")
    group.add_argument("--warmup-mode", choices=WARMUP_MODES, default=defaults.warmup_mode,
                       help="replace: the warmup takes the place of the schedule's first epochs "
                       "(paper 000 read literally: 20 epochs in all); prepend: the schedule "
                       "starts after the warmup (give --epochs with the warmup included)")
    group.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing,
                       metavar="EPS", help=LABEL_SMOOTHING_HELP)
    group.add_argument("--mixup", type=float, default=defaults.mixup_alpha, dest="mixup_alpha",
                       metavar="ALPHA",
                       help="mixup (Zhang et al.): each training window mixed with another of "
                       "its batch, waveforms and targets, weight ~ Beta(ALPHA, ALPHA); in the "
                       "data pipeline only, validation stays clean. 0: off")
    group.add_argument("--between-class", action="store_true",
                       help="between-class learning (Tokozume et al., paper 003): two windows of "
                       "different classes, r ~ U(0,1), (r x1 + (1-r) x2) / sqrt(r^2 + (1-r)^2), "
                       "targets r y1 + (1-r) y2, KL-divergence loss. Single-label data only")
    group.add_argument("--specaugment", nargs="?", const="default", default=defaults.specaugment,
                       metavar="FREQ:TIME",
                       help="frequency and time masks on the spectrogram of models with a "
                       "spectrogram frontend, maximum widths in bins and frames; the bare flag "
                       f"uses Park et al.'s SM policy ({SPECAUGMENT_DEFAULT}: "
                       f"{SPECAUGMENT_MASKS} masks of each kind, a time mask at most "
                       f"{SPECAUGMENT_MAX_TIME_FRACTION:g} of the frames). Training only: the "
                       "identity at inference and absent from the export")
    group.add_argument("--teacher", type=Path, default=None, metavar="RUN_DIR",
                       help="knowledge distillation (paper 000, Hinton et al.) from a finished "
                       "run with the same labels, task and input: loss = L * L_hard + (1 - L) * "
                       "T^2 * KL(softmax(z_t/T) || softmax(z_s/T)), per-class binary KL for "
                       "multi-label; the teacher's outputs are computed once per training "
                       "window and cached in the run directory")
    # SUPPRESS: absent unless given, so that giving them without --teacher is an error.
    group.add_argument("--kd-temperature", type=float, default=argparse.SUPPRESS, metavar="T",
                       help=f"distillation temperature T (default {defaults.kd_temperature:g}, "
                       "paper 000's best)")
    group.add_argument("--kd-lambda", type=float, default=argparse.SUPPRESS, metavar="L",
                       help=f"weight L of the hard-target loss (default {defaults.kd_lambda:g}, "
                       "paper 000's best)")


def train_config_values(args) -> dict:
    """The TrainConfig fields the refinement options set, from parsed `add_arguments` args."""
    from lean.config import TrainConfig

    defaults = TrainConfig()
    temperature = getattr(args, "kd_temperature", None)
    kd_lambda = getattr(args, "kd_lambda", None)
    if args.teacher is None and (temperature is not None or kd_lambda is not None):
        raise LeanError("--kd-temperature and --kd-lambda need --teacher RUN_DIR")
    teacher = None
    if args.teacher is not None:
        if not args.teacher.is_dir():
            raise LeanError(f"--teacher {args.teacher}: no such run directory")
        teacher = str(args.teacher.absolute())
    return {
        "optimizer": args.optimizer,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "lr_schedule": args.lr_schedule,
        "warmup": args.warmup,
        "warmup_mode": args.warmup_mode,
        "label_smoothing": args.label_smoothing,
        "mixup_alpha": args.mixup_alpha,
        "between_class": args.between_class,
        "specaugment": args.specaugment,
        "teacher": teacher,
        "kd_temperature": defaults.kd_temperature if temperature is None else temperature,
        "kd_lambda": defaults.kd_lambda if kd_lambda is None else kd_lambda,
    }


__all__ = [
    "GRADUAL_WARMUP_START_LR",
    "LABEL_SMOOTHING_HELP",
    "OPTIMIZERS",
    "SCHEDULE_FORMS",
    "SPECAUGMENT_DEFAULT",
    "SPECAUGMENT_FORMS",
    "ScheduleSpec",
    "SpecAugmentSpec",
    "WARMUP_FORMS",
    "WARMUP_MODES",
    "WarmupSpec",
    "add_arguments",
    "canonical_fields",
    "check_teacher",
    "check_train_config",
    "parse_lr_schedule",
    "parse_specaugment",
    "parse_warmup",
    "train_config_values",
]
