"""Training refinements: label smoothing, KD and KL losses, schedules and warmup, option checks."""

import argparse

import numpy as np
import pytest

from lean.errors import LeanError

# ---------------------------------------------------------------- label smoothing


def test_single_label_smoothing_gives_paper_targets():
    from lean.training.losses import smooth_targets

    one_hot = np.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]])
    smoothed = smooth_targets(one_hot, 0.1, "single_label")
    # Paper 000 eq. 13: 1 - EPS for the true class, EPS / (K - 1) = 0.1 / 3 for each other.
    np.testing.assert_allclose(smoothed, [[0.1 / 3, 0.9, 0.1 / 3, 0.1 / 3],
                                          [0.9, 0.1 / 3, 0.1 / 3, 0.1 / 3]], rtol=1e-12)
    np.testing.assert_allclose(smooth_targets(np.array([[1.0, 0.0]]), 0.1, "single_label"),
                               [[0.9, 0.1]], rtol=1e-12)
    # A mixture stays a distribution.
    mixture = np.array([[0.3, 0.7, 0.0, 0.0]])
    np.testing.assert_allclose(smooth_targets(mixture, 0.2, "single_label").sum(), 1.0)
    assert smooth_targets(one_hot, 0.0, "single_label") is one_hot


def test_multilabel_smoothing_moves_each_class_towards_one_half():
    from lean.training.losses import smooth_targets

    multi_hot = np.array([[1.0, 0.0, 1.0]])
    np.testing.assert_allclose(smooth_targets(multi_hot, 0.2, "multilabel"), [[0.9, 0.1, 0.9]],
                               rtol=1e-12)


@pytest.mark.parametrize("num_classes", [2, 5])
def test_keras_label_smoothing_equals_paper_eps_times_k_over_k_minus_1(num_classes):
    """What `lean train --help` says: Keras' label_smoothing EPS' = EPS K / (K - 1)."""
    import keras

    from lean.training.losses import RefinedLoss

    rng = np.random.default_rng(0)
    targets = np.eye(num_classes, dtype=np.float32)[rng.integers(num_classes, size=6)]
    probabilities = rng.dirichlet(np.ones(num_classes), size=6).astype(np.float32)
    eps = 0.1
    ours = RefinedLoss("single_label", num_classes, label_smoothing=eps)(targets, probabilities)
    keras_loss = keras.losses.CategoricalCrossentropy(
        label_smoothing=eps * num_classes / (num_classes - 1))(targets, probabilities)
    np.testing.assert_allclose(float(ours), float(keras_loss), rtol=1e-6)


def test_refined_loss_without_refinements_is_the_task_loss():
    from lean.config import TrainConfig
    from lean.training.losses import RefinedLoss, build_loss

    rng = np.random.default_rng(1)
    targets = (rng.uniform(size=(5, 3)) < 0.4).astype(np.float32)
    probabilities = rng.uniform(0.05, 0.95, size=(5, 3)).astype(np.float32)
    plain = build_loss(TrainConfig(), "multilabel", 3)
    assert not isinstance(plain, RefinedLoss)  # nothing on: exactly today's loss
    expected = -np.mean(targets * np.log(probabilities) + (1 - targets) * np.log(1 - probabilities))
    np.testing.assert_allclose(float(plain(targets, probabilities)), expected, rtol=1e-5)
    smoothed = build_loss(TrainConfig(label_smoothing=0.2), "multilabel", 3)
    soft = targets * 0.8 + 0.1
    expected = -np.mean(soft * np.log(probabilities) + (1 - soft) * np.log(1 - probabilities))
    np.testing.assert_allclose(float(smoothed(targets, probabilities)), expected, rtol=1e-5)


def test_between_class_loss_is_the_kl_divergence():
    from lean.config import TrainConfig
    from lean.training.losses import build_loss

    targets = np.array([[0.3, 0.7, 0.0], [0.0, 0.45, 0.55]], dtype=np.float32)
    probabilities = np.array([[0.2, 0.5, 0.3], [0.1, 0.3, 0.6]], dtype=np.float32)
    loss = build_loss(TrainConfig(between_class=True), "single_label", 3)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(targets > 0, targets * np.log(targets / probabilities), 0.0)
    np.testing.assert_allclose(float(loss(targets, probabilities)), terms.sum(axis=1).mean(),
                               rtol=1e-5)
    # A perfect fit of a soft target costs nothing (cross-entropy would cost its entropy).
    assert abs(float(loss(targets[:1], np.array([[0.3, 0.7, 1e-12]], np.float32)))) < 1e-5


# ---------------------------------------------------------------- knowledge distillation


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _numpy_kd_single(hard, student_logits, teacher_logits, temperature, kd_lambda):
    """Paper 000 eqs. 14-16 in NumPy, float64."""
    p = _softmax(student_logits)
    hard_loss = -np.sum(hard * np.log(p), axis=1)
    q_t, q_s = _softmax(teacher_logits / temperature), _softmax(student_logits / temperature)
    kd = temperature ** 2 * np.sum(q_t * np.log(q_t / q_s), axis=1)
    return np.mean(kd_lambda * hard_loss + (1 - kd_lambda) * kd)


def _numpy_kd_multi(hard, student_logits, teacher_logits, temperature, kd_lambda):
    p = _sigmoid(student_logits)
    bce = -np.mean(hard * np.log(p) + (1 - hard) * np.log(1 - p), axis=1)
    q, s = _sigmoid(teacher_logits / temperature), _sigmoid(student_logits / temperature)
    kl = q * np.log(q / s) + (1 - q) * np.log((1 - q) / (1 - s))
    return np.mean(kd_lambda * bce + (1 - kd_lambda) * temperature ** 2 * kl.mean(axis=1))


@pytest.mark.parametrize("task", ["single_label", "multilabel"])
@pytest.mark.parametrize("temperature,kd_lambda", [(10.0, 0.5), (1.0, 0.2), (3.0, 0.8)])
def test_distillation_loss_matches_numpy(task, temperature, kd_lambda):
    import keras
    import tensorflow as tf

    from lean.training.losses import RefinedLoss, tempered_probabilities

    rng = np.random.default_rng(int(temperature * 10 + kd_lambda * 100))
    num_classes, batch = 4, 6
    student = rng.normal(0, 3, size=(batch, num_classes))
    teacher = rng.normal(0, 3, size=(batch, num_classes))
    if task == "single_label":
        hard = np.eye(num_classes)[rng.integers(num_classes, size=batch)]
        expected = _numpy_kd_single(hard, student, teacher, temperature, kd_lambda)
        activation = keras.activations.softmax
    else:
        hard = (rng.uniform(size=(batch, num_classes)) < 0.4).astype(np.float64)
        expected = _numpy_kd_multi(hard, student, teacher, temperature, kd_lambda)
        activation = keras.activations.sigmoid
    teacher_targets = tempered_probabilities(teacher.astype(np.float32), temperature, task)
    y_true = np.concatenate([hard, np.asarray(teacher_targets)], axis=1).astype(np.float32)
    loss = RefinedLoss(task, num_classes, kd_temperature=temperature, kd_lambda=kd_lambda)
    # Probabilities alone: the loss recovers the logits from them ...
    plain = tf.constant(np.asarray(activation(tf.constant(student, tf.float32))))
    assert not hasattr(plain, "_keras_logits")
    np.testing.assert_allclose(float(loss(y_true, plain)), expected, rtol=2e-4)
    # ... and from a softmax/sigmoid output (as in fit) it takes the logits Keras keeps on it.
    outputs = activation(tf.constant(student, tf.float32))
    assert hasattr(outputs, "_keras_logits")
    np.testing.assert_allclose(float(loss(y_true, outputs)), expected, rtol=2e-5)


def test_distillation_loss_on_validation_targets_is_the_hard_loss():
    import keras

    from lean.training.losses import RefinedLoss

    rng = np.random.default_rng(3)
    hard = np.eye(3, dtype=np.float32)[[0, 2, 1, 1]]
    probabilities = rng.dirichlet(np.ones(3), size=4).astype(np.float32)
    loss = RefinedLoss("single_label", 3, kd_temperature=10.0, kd_lambda=0.5)
    np.testing.assert_allclose(float(loss(hard, probabilities)),
                               float(keras.losses.CategoricalCrossentropy()(hard, probabilities)),
                               rtol=1e-6)
    with pytest.raises(LeanError, match="targets of width 5 for 3 classes"):
        loss(np.zeros((4, 5), np.float32), probabilities)


def test_loss_and_hard_target_metric_survive_serialization():
    import keras

    from lean.config import TrainConfig
    from lean.training.losses import HardTargets, RefinedLoss, build_metrics

    loss = RefinedLoss("single_label", 3, label_smoothing=0.1, divergence=True,
                       kd_temperature=4.0, kd_lambda=0.3)
    again = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(again, RefinedLoss) and again.get_config() == loss.get_config()
    (metric,) = build_metrics(TrainConfig(teacher="/some/run"), "single_label", 3)
    assert isinstance(metric, HardTargets) and metric.name == "accuracy"
    hard = np.eye(3, dtype=np.float32)[[0, 1, 2, 2]]
    y_true = np.concatenate([hard, np.full((4, 3), 1 / 3, np.float32)], axis=1)
    predictions = np.eye(3, dtype=np.float32)[[0, 1, 2, 0]]
    metric.update_state(y_true, predictions)
    assert float(metric.result()) == 0.75
    copy = keras.metrics.deserialize(keras.metrics.serialize(metric))
    assert isinstance(copy, HardTargets) and copy.name == "accuracy"


# ---------------------------------------------------------------- schedules and warmup


def _lr(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_constant_and_step_schedules_per_step():
    from lean.training.schedules import RefinedSchedule

    constant = RefinedSchedule(0.003, steps_per_epoch=4, epochs=3)
    assert _lr(constant, [0, 5, 11]) == pytest.approx([0.003] * 3, rel=1e-6)
    # Paper 000: lr 0.1 divided by 10 every 5 epochs over 20 epochs (4 steps per epoch here).
    step = RefinedSchedule(0.1, steps_per_epoch=4, epochs=20, schedule="step:5:0.1")
    assert _lr(step, [0, 19, 20, 39, 40, 60, 79]) == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 1e-4, 1e-4], rel=1e-5)


def test_cosine_schedule_per_step():
    from lean.training.schedules import RefinedSchedule

    cosine = RefinedSchedule(1.0, steps_per_epoch=2, epochs=4, schedule="cosine")
    # 0.5 (1 + cos(pi s / 8)) at s = 0, 1, 2, 4, 6, 8.
    assert _lr(cosine, [0, 1, 2, 4, 6, 8]) == pytest.approx(
        [1.0, 0.9619398, 0.8535534, 0.5, 0.1464466, 0.0], abs=1e-6)


def test_constant_warmup_replaces_or_prepends():
    from lean.training.schedules import RefinedSchedule

    literal = RefinedSchedule(0.1, 4, 20, schedule="step:5:0.1", warmup="constant:5:1e-5")
    # Paper 000 read literally: 1e-5 for epochs 0-4, then the decay goes on at 0.01.
    assert _lr(literal, [0, 10, 19, 20, 39, 40]) == pytest.approx(
        [1e-5, 1e-5, 1e-5, 0.01, 0.01, 0.001], rel=1e-5)
    prepended = RefinedSchedule(0.1, 4, 25, schedule="step:5:0.1", warmup="constant:5:1e-5",
                                warmup_mode="prepend")
    assert _lr(prepended, [19, 20, 39, 40, 99]) == pytest.approx(
        [1e-5, 0.1, 0.1, 0.01, 1e-4], rel=1e-5)


def test_gradual_warmup_rises_linearly_per_step():
    from lean.training.schedules import RefinedSchedule

    gradual = RefinedSchedule(0.1, 4, 20, schedule="step:5:0.1", warmup="gradual:5")
    # From 1e-5 at step 0 towards 0.1 over 5 x 4 = 20 steps (Goyal et al.).
    assert _lr(gradual, [0, 1, 10, 19, 20]) == pytest.approx(
        [1e-5, 1e-5 + (0.1 - 1e-5) / 20, 0.050005, 1e-5 + (0.1 - 1e-5) * 19 / 20, 0.01],
        rel=1e-5)
    prepended = RefinedSchedule(1.0, 1, 6, schedule="cosine", warmup="gradual:2:0.1",
                                warmup_mode="prepend")
    # Warmup 0.1, 0.55; then a cosine over the remaining 4 steps: 1, 0.8536, 0.5, 0.1464.
    assert _lr(prepended, [0, 1, 2, 3, 4, 5]) == pytest.approx(
        [0.1, 0.55, 1.0, 0.8535534, 0.5, 0.1464466], abs=1e-6)


def test_schedule_round_trips_through_its_config():
    import keras

    from lean.training.schedules import RefinedSchedule

    schedule = RefinedSchedule(0.1, 4, 20, schedule="cosine", warmup="gradual:3:0.001",
                               warmup_mode="prepend")
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert isinstance(again, RefinedSchedule) and again.get_config() == schedule.get_config()
    assert _lr(again, range(0, 80, 7)) == _lr(schedule, range(0, 80, 7))


def test_default_optimizer_is_plain_adam_at_a_constant_rate():
    import keras

    from lean.config import TrainConfig
    from lean.training.schedules import RefinedSchedule, build_optimizer

    adam = build_optimizer(TrainConfig(learning_rate=3e-4), steps_per_epoch=10)
    assert isinstance(adam, keras.optimizers.Adam) and adam.weight_decay is None
    assert float(adam.learning_rate) == pytest.approx(3e-4)
    sgd = build_optimizer(TrainConfig(optimizer="sgd", momentum=0.8, weight_decay=1e-4,
                                      lr_schedule="cosine"), steps_per_epoch=10)
    assert isinstance(sgd, keras.optimizers.SGD)
    assert (sgd.momentum, sgd.weight_decay) == (0.8, 1e-4)
    assert isinstance(sgd._learning_rate, RefinedSchedule)


def test_schedule_log_records_each_epochs_first_and_last_step():
    import keras

    from lean.config import TrainConfig
    from lean.training.schedules import ScheduleLog, build_learning_rate

    keras.utils.set_random_seed(0)
    train = TrainConfig(epochs=3, learning_rate=0.1, lr_schedule="step:1:0.5",
                        warmup="gradual:1:0.01")
    learning_rate = build_learning_rate(train, steps_per_epoch=2)
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    history = model.fit(np.ones((4, 3)), np.ones((4, 1)), batch_size=2, epochs=3, verbose=0,
                        callbacks=[ScheduleLog(learning_rate)])
    # Epoch 1: warmup 0.01 -> 0.055 (steps 0, 1); then 0.1 * 0.5^1, 0.1 * 0.5^2 (replace mode).
    assert history.history["lr_start"] == pytest.approx([0.01, 0.05, 0.025], rel=1e-6)
    assert history.history["lr_end"] == pytest.approx([0.055, 0.05, 0.025], rel=1e-6)


# ---------------------------------------------------------------- options


@pytest.mark.parametrize("fields,message", [
    ({"warmup": "gradual:x"}, r"^--warmup gradual:x: EPOCHS must be a positive integer, not "
     r"'x'; accepted forms: constant:EPOCHS:LR \| gradual:EPOCHS\[:START_LR\]$"),
    ({"lr_schedule": "step:0:0.1"}, r"^--lr-schedule step:0:0.1: EVERY must be a positive "
     r"integer, not '0'; accepted forms: constant \| step:EVERY:FACTOR \| cosine$"),
    ({"lr_schedule": "step:5:2"}, r"^--lr-schedule step:5:2: FACTOR must be at most 1"),
    ({"lr_schedule": "linear"}, r"^--lr-schedule linear: unknown schedule; accepted forms"),
    ({"warmup": "constant:5"}, r"^--warmup constant:5: unknown warmup; accepted forms"),
    ({"warmup": "constant:5:-1"}, r"^--warmup constant:5:-1: LR must be a positive number"),
    ({"specaugment": "15"}, r"^--specaugment 15: expected two widths; accepted forms: FREQ:TIME"),
    ({"specaugment": "0:0"}, r"^--specaugment 0:0: both widths are 0"),
    ({"specaugment": "a:5"}, r"^--specaugment a:5: FREQ must be a whole number of bins"),
    ({"optimizer": "rmsprop"}, r"^--optimizer rmsprop: unknown optimizer; accepted: adam \| sgd$"),
    ({"mixup_alpha": 0.2, "between_class": True}, r"^--mixup and --between-class both mix"),
    ({"label_smoothing": 1.0}, r"^--label-smoothing 1.0: EPS must lie in \[0, 1\)$"),
    ({"kd_lambda": 1.5}, r"^--kd-lambda 1.5: L must lie in \[0, 1\]$"),
    ({"warmup_mode": "after"}, r"^--warmup-mode after: accepted: replace \| prepend$"),
])
def test_malformed_options_are_one_line_errors(fields, message):
    from lean.config import TrainConfig

    with pytest.raises(LeanError, match=message) as error:
        TrainConfig(**fields)
    assert "\n" not in str(error.value)


def test_options_are_stored_in_canonical_form():
    from lean.config import RunConfig, TrainConfig, from_dict, to_dict

    train = TrainConfig(optimizer="SGD", lr_schedule="Step:5:0.10", warmup="gradual:5",
                        specaugment="default")
    assert (train.optimizer, train.lr_schedule, train.warmup, train.specaugment) == (
        "sgd", "step:5:0.1", "gradual:5:1e-05", "15:70")
    defaults = TrainConfig()
    assert (defaults.optimizer, defaults.lr_schedule, defaults.warmup, defaults.label_smoothing,
            defaults.mixup_alpha, defaults.between_class, defaults.specaugment,
            defaults.teacher) == ("adam", "constant", None, 0.0, 0.0, False, None, None)
    config = RunConfig(train=train)
    assert from_dict(RunConfig, to_dict(config)).train == train


def test_cross_checks_against_epochs_lr_and_task():
    from lean.config import TrainConfig
    from lean.training.options import check_train_config

    check_train_config(TrainConfig(epochs=20, warmup="gradual:5"), "single_label", 2)
    with pytest.raises(LeanError, match=r"^--warmup constant:5:0.001: 5 warmup epochs leave none"):
        check_train_config(TrainConfig(epochs=5, warmup="constant:5:1e-3"), "multilabel")
    with pytest.raises(LeanError, match=r"START_LR 0.001 must be below --lr 0.0001"):
        check_train_config(TrainConfig(epochs=10, warmup="gradual:2:1e-3"), "multilabel")
    with pytest.raises(LeanError, match=r"^--between-class .* needs single-label data, and this "
                       r"run's task is multilabel$"):
        check_train_config(TrainConfig(between_class=True), "multilabel")
    with pytest.raises(LeanError, match=r"^--label-smoothing 0.6: above \(K-1\)/K = 0.5"):
        check_train_config(TrainConfig(label_smoothing=0.6), "single_label", 2)


def test_command_line_options_fill_the_train_config(tmp_path):
    from lean.config import TrainConfig
    from lean.training.options import add_arguments, train_config_values

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    values = train_config_values(parser.parse_args([]))
    assert TrainConfig(**values) == TrainConfig()
    args = parser.parse_args(["--specaugment", "--lr-schedule", "cosine", "--mixup", "0.4",
                              "--label-smoothing", "0.1", "--warmup", "gradual:2"])
    train = TrainConfig(**train_config_values(args))
    assert (train.specaugment, train.lr_schedule, train.mixup_alpha, train.warmup) == (
        "15:70", "cosine", 0.4, "gradual:2:1e-05")
    with pytest.raises(LeanError, match=r"^--kd-temperature and --kd-lambda need --teacher"):
        train_config_values(parser.parse_args(["--kd-temperature", "4"]))
    with pytest.raises(LeanError, match=r"^--teacher .*nowhere: no such run directory$"):
        train_config_values(parser.parse_args(["--teacher", str(tmp_path / "nowhere")]))
    teacher = TrainConfig(**train_config_values(parser.parse_args(
        ["--teacher", str(tmp_path), "--kd-lambda", "0.2"])))
    assert teacher.teacher == str(tmp_path)
    assert (teacher.kd_temperature, teacher.kd_lambda) == (10.0, 0.2)


def _fake_run(run_dir, labels, task):
    from lean.config import ModelConfig, RunConfig, save_json

    run_dir.mkdir()
    save_json(RunConfig(model=ModelConfig(num_classes=len(labels), task=task)),
              run_dir / "config.json")
    (run_dir / "labels.txt").write_text("".join(f"{label}\n" for label in labels))
    (run_dir / "best.keras").write_bytes(b"")
    return run_dir


def test_teacher_must_share_labels_and_task(tmp_path):
    from lean.training.options import check_teacher

    labels = ("dog", "cat", "bird")
    good = _fake_run(tmp_path / "good", labels, "single_label")
    assert check_teacher(good, labels, "single_label").model.num_classes == 3
    with pytest.raises(LeanError, match=r"^--teacher .*good: trained for the single_label task, "
                       r"this run is multilabel$"):
        check_teacher(good, labels, "multilabel")
    other = _fake_run(tmp_path / "other", ("dog", "cat", "cow"), "single_label")
    with pytest.raises(LeanError, match=r"its 3 labels are not this dataset's 3 \(missing bird\)"):
        check_teacher(other, labels, "single_label")
    with pytest.raises(LeanError, match=r"^--teacher .*: not a finished run directory"):
        check_teacher(tmp_path, labels, "single_label")
