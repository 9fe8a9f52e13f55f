"""Training ST-ABN (or the baseline) with `model.fit`: the library behind `stabn_tf.train`.

Everything a run needs is in `TrainConfig`. `train(config)` goes in steps: check every
setting (`check_config`), find and check the data (`resolve_data`), set up precision, seed
and strategy (`setup_execution`), build and compile the model (`build_training_model`),
make the datasets and callbacks; only then, with everything known to work, does it write
into the run directory (`stabn_tf.runs.RunDirectory`: config, checkpoints, logs, history,
results, explanation figures), fit, evaluate and save. A command that fails before
training starts leaves an existing run byte-identical.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence

import keras
import tensorflow as tf
from absl import logging

from stabn_tf import data as data_lib
from stabn_tf.data import tfrecord
from stabn_tf.data.preprocessor import ClipPreprocessor
from stabn_tf.disk import DiskFullError, write_atomic
from stabn_tf.errors import StabnError
from stabn_tf.explain.figures import figure_png
from stabn_tf.explain.render import prediction_figure
from stabn_tf.inference.inputs import Clip, tfrecord_clips
from stabn_tf.inference.keras_runner import KerasRunner
from stabn_tf.models import presets
from stabn_tf.models.backbone import RESNET_SPECS
from stabn_tf.models.inflate import initialize, parse_init
from stabn_tf.models.policy import dtype_policy
from stabn_tf.models.stabn import (
    ATTENTION_HEADS,
    VideoClassifier,
    build_baseline,
    build_stabn,
    explanation_model,
)
from stabn_tf.outputs import ATTENTION, PERCEPTION, SPATIAL_ATTENTION, TEMPORAL_ATTENTION
from stabn_tf.precision import (
    FLAG_HELP,
    POLICIES,
    TRAINING_PRECISIONS,
    check_precision,
    choose_precision,
    current_name,
)
from stabn_tf.runs import RunDirectory, RunError, data_patterns
from stabn_tf.training.backup import BackupState, RunBackup, save_model_atomic
from stabn_tf.training.callbacks import (
    AttentionImages,
    HistoryLog,
    SaveBestModel,
    StopOnNaN,
    best_in_history,
)
from stabn_tf.training.distribute import (
    is_chief,
    is_multi_worker,
    make_strategy,
    multi_worker_trainer,
    task_identity,
)
from stabn_tf.training.recipe import apply_weight_decay, build_optimizer, compile_model
from stabn_tf.training.signals import Interrupted
from stabn_tf.training.supervision import (
    SpatialSupervisionLoss,
    TemporalSupervisionLoss,
    pack_targets,
)

MODELS = ("stabn", "baseline")
DATASETS = ("tfrecord", "synthetic")
SCHEDULES = ("step", "cosine")


class ConfigError(ValueError, StabnError):
    """A setting or an input that makes the run impossible, found before training."""


class TrainingError(RuntimeError, StabnError):
    """Training started but had to stop (e.g. a non-finite loss)."""


def _setting(default, help: str):
    """A `TrainConfig` field with its `--flag` help text (`stabn_tf.train` makes the flags)."""
    return dataclasses.field(default=default, metadata={"help": help})


# The paper's model and recipe (`stabn_r50_ssv2`): TrainConfig's defaults.
_PAPER = presets.get("stabn_r50_ssv2").train_settings()


@dataclasses.dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe on SSv2 (preset `stabn_r50_ssv2`),
    initialised from scratch (`init="none"`); `from_preset` starts from another preset."""

    output_dir: str = _setting("runs/stabn",
                               "Where checkpoints, logs, history.csv and results.json go.")
    # data
    dataset: str = _setting("tfrecord", "tfrecord: --train_files/--val_files; synthetic: the "
                            "built-in dataset, generated into --cache_dir when missing.")
    train_files: str = _setting("", "Glob(s) of training TFRecord shards.")
    val_files: str = _setting("", "Glob(s) of validation TFRecord shards.")
    labels: str = _setting("", "labels.txt (one class per line); default: next to the "
                           "training shards.")
    cache_dir: str = _setting("data/cache", "Cache for --dataset=synthetic.")
    synthetic_train_per_class: int = _setting(48, "Synthetic training videos per class.")
    synthetic_val_per_class: int = _setting(10, "Synthetic validation videos per class.")
    synthetic_resolution: int = _setting(128, "Synthetic video height in pixels.")
    synthetic_frames: int = _setting(24, "Frames per synthetic video.")
    shuffle_buffer: int = _setting(256, "Training records shuffled together (in blocks of "
                                   "this many).")
    # model
    model: str = _setting(_PAPER["model"], "stabn or baseline (the same 3D ResNet without the "
                          "branches).")
    depth: int = _setting(_PAPER["depth"], "ResNet depth: 18, 34, 50 or 101.")
    width_multiplier: float = _setting(_PAPER["width_multiplier"],
                                       "Scales all channel counts (small configs).")
    num_frames: int = _setting(_PAPER["num_frames"], "T, frames per clip.")
    image_size: int = _setting(_PAPER["image_size"], "Input height and width (multiple of 32).")
    num_classes: int = _setting(0, "K; 0 takes it from labels.txt (and a different value is "
                                "an error).")
    dropout: float = _setting(_PAPER["dropout"], "Dropout before the classifiers.")
    attention_head: str = _setting(_PAPER["attention_head"], "per_frame (reference) or gap: "
                                   "the attention branch's scores.")
    fusion_relu: bool = _setting(_PAPER["fusion_relu"], "ReLU after the attention fusion (the "
                                 "paper's code has it).")
    init: str = _setting("none", "none; imagenet (torchvision's ResNet-50 from the Hugging "
                         "Face Hub, inflated; imagenet:<owner>/<repo> for another timm "
                         "ResNet-50, imagenet:keras for Keras's); a .safetensors file; or a "
                         ".keras / .weights.h5 checkpoint.")
    # optimisation
    batch_size: int = _setting(_PAPER["batch_size"], "Global batch size over all replicas.")
    epochs: int = _setting(_PAPER["epochs"], "Training epochs.")
    steps_per_epoch: int = _setting(0, "0: one pass over the training split.")
    validation_steps: int = _setting(0, "0: the whole validation split.")
    base_lr: float = _setting(_PAPER["base_lr"], "Learning rate per 64 clips; scaled linearly "
                              "with --batch_size.")
    momentum: float = _setting(_PAPER["momentum"], "SGD momentum.")
    nesterov: bool = _setting(_PAPER["nesterov"], "Nesterov momentum.")
    weight_decay: float = _setting(_PAPER["weight_decay"], "L2 on conv and dense kernels "
                                   "(PyTorch-style, before momentum).")
    schedule: str = _setting(_PAPER["schedule"], "step (×0.1 at --decay_epochs) or cosine.")
    decay_epochs: Sequence[int] = _setting(_PAPER["decay_epochs"], "Epochs where the step "
                                           "schedule multiplies the lr by 0.1.")
    warmup_epochs: float = _setting(_PAPER["warmup_epochs"], "Linear warm-up length in "
                                    "epochs.")
    clip_norm: float = _setting(_PAPER["clip_norm"], "Clip gradients at this global norm "
                                "(0: off).")
    label_smoothing: float = _setting(0.0, "Label smoothing of both cross-entropies.")
    perception_loss_weight: float = _setting(1.0, "Weight of the perception branch's "
                                             "cross-entropy.")
    attention_loss_weight: float = _setting(1.0, "Weight of the attention branch's "
                                            "cross-entropy.")
    # attention supervision (0: the paper's recipe, unchanged)
    attention_supervision_weight: float = _setting(
        0.0, "λ of the loss between Ms and the box masks on annotated frames (0: the paper's "
        "recipe; needs records with boxes).")
    temporal_supervision_weight: float = _setting(
        0.0, "λ of the loss between Mt and the per-frame 'action happens' labels where the "
        "records have them (0: off).")
    supervised_fraction: float = _setting(
        1.0, "Use the boxes/labels of this fixed, seeded fraction of the training videos "
        "only ('a few annotated videos').")
    annotated_share: float = _setting(
        0.0, "Share of each training batch drawn from the training clips whose records "
        "carry boxes or action labels (0: every clip as often as any other). A few "
        "corrected clips among hundreds are then seen at every step, not once an epoch, "
        "and the rest of the batch keeps the other clips' classification in play.")
    # execution
    # --precision is `stabn_tf.cli.define_precision`'s (training=True); old spellings read.
    precision: str = _setting("float32", FLAG_HELP.format(names=", ".join(TRAINING_PRECISIONS)))
    jit_compile: bool = _setting(False, "Compile the train step with XLA.")
    strategy: str = _setting("auto", "auto, default, mirrored, multi_worker (TF_CONFIG) or tpu.")
    tpu: str = _setting("", "TPU address for --strategy=tpu.")
    sync_bn: bool = _setting(False, "Synchronise BN statistics across replicas.")
    seed: int = _setting(0, "Seed of initialisation, data order and augmentation.")
    backup_every_steps: int = _setting(0, "Crash-safe backup every N steps (a rerun resumes "
                                       "at that step, with the same data); 0: at each "
                                       "epoch's end.")
    explain_every_epochs: int = _setting(1, "Attention images to TensorBoard every N epochs "
                                         "(0: never).")
    num_explain_clips: int = _setting(3, "Validation clips shown in the attention images.")
    verbose: int = _setting(1, "Keras progress output: 0 silent, 1 progress bar, 2 one line "
                            "per epoch.")
    overwrite: bool = _setting(False, "Start an existing run in --output_dir afresh (its "
                               "checkpoints, backup, logs and history are removed) instead "
                               "of resuming it.")

    @classmethod
    def from_preset(cls, name: str, **overrides) -> TrainConfig:
        """The settings of built-in preset `name` (model, architecture and recipe) over the
        defaults, then `overrides`; `PresetError` (one line) for an unknown name."""
        return cls(**{**presets.get(name).train_settings(), **overrides})


# A run's identity: what the model is and what it learns from. Resuming a run with another
# value of any of these is refused (the backup and checkpoints belong to the old one). Every
# other setting may change on resume (length, optimisation recipe, logging, backup frequency,
# hardware) and applies from the resumed epoch on.
IDENTITY_SETTINGS = frozenset({
    "dataset", "train_files", "val_files", "labels", "num_classes", "class_names",
    "synthetic_train_per_class", "synthetic_val_per_class", "synthetic_resolution",
    "synthetic_frames", "model", "depth", "width_multiplier", "num_frames", "image_size",
    "dropout", "attention_head", "fusion_relu", "init", "sync_bn", "precision", "seed",
    "attention_supervision_weight", "temporal_supervision_weight", "supervised_fraction"})


def check_config(config: TrainConfig) -> None:
    """Every setting checked before anything runs or is written; `ConfigError`, one line."""
    config.precision = check_precision(config.precision, TRAINING_PRECISIONS)
    choices = {"model": MODELS, "dataset": DATASETS,
               "schedule": SCHEDULES, "attention_head": ATTENTION_HEADS,
               "depth": tuple(RESNET_SPECS)}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(f"--{name}={getattr(config, name)!r}: must be one of "
                              f"{list(allowed)}.")
    for name in ("batch_size", "epochs", "num_frames", "image_size", "shuffle_buffer"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(config, name)}.")
    for name in ("steps_per_epoch", "validation_steps", "backup_every_steps",
                 "explain_every_epochs", "num_explain_clips", "num_classes", "weight_decay",
                 "clip_norm", "warmup_epochs", "perception_loss_weight",
                 "attention_loss_weight", "base_lr", "attention_supervision_weight",
                 "temporal_supervision_weight"):
        if getattr(config, name) < 0:
            raise ConfigError(f"--{name} must be >= 0, got {getattr(config, name)}.")
    if not config.width_multiplier > 0:
        raise ConfigError(f"--width_multiplier must be > 0, got {config.width_multiplier}.")
    if not 0 <= config.annotated_share < 1:
        raise ConfigError(f"--annotated_share must be in [0, 1), got {config.annotated_share}.")
    if config.annotated_share and not supervised(config):
        raise ConfigError("--annotated_share needs attention supervision (an "
                          "--attention_supervision_weight or --temporal_supervision_weight "
                          "above 0).")
    for name in ("momentum", "dropout", "label_smoothing"):
        if not 0 <= getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be in [0, 1), got {getattr(config, name)}.")
    if not 0 < config.supervised_fraction <= 1:
        raise ConfigError(f"--supervised_fraction must be in (0, 1], got "
                          f"{config.supervised_fraction}.")
    if supervised(config) and config.model != "stabn":
        raise ConfigError("attention supervision needs --model=stabn (the baseline has no "
                          "attention maps).")
    if any(e < 1 for e in config.decay_epochs):
        raise ConfigError(f"--decay_epochs must be >= 1, got {list(config.decay_epochs)}.")
    init = parse_init(config.init)
    if init.from_resnet50 and (config.depth != 50 or config.width_multiplier != 1.0):
        raise ConfigError(f"--init={config.init} needs --depth=50 and --width_multiplier=1 "
                          "(ImageNet ResNet-50 weights).")


def supervised(config: TrainConfig) -> bool:
    """Whether the run adds attention-supervision losses (any weight above 0)."""
    return config.attention_supervision_weight > 0 or config.temporal_supervision_weight > 0


@dataclasses.dataclass
class TrainingData:
    """The files a run reads, its classes and how many clips each split has."""

    train_files: list[str]
    val_files: list[str]
    class_names: list[str]
    train_count: int
    val_count: int


def resolve_data(config: TrainConfig) -> TrainingData:
    """Finds the shards and class names and counts the clips; errors name what is wrong."""
    train_pattern, val_pattern = data_patterns(dataclasses.asdict(config))
    if not train_pattern or not val_pattern:
        raise ConfigError("--train_files and --val_files are required with "
                          "--dataset=tfrecord (or use --dataset=synthetic).")
    try:
        train_files = data_lib.list_files(train_pattern)
        val_files = data_lib.list_files(val_pattern)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    labels_path = config.labels or os.path.join(os.path.dirname(train_files[0]), "labels.txt")
    if not os.path.exists(labels_path):
        raise ConfigError(f"no labels file {labels_path!r}: pass --labels=<labels.txt>.")
    class_names = data_lib.read_labels(labels_path)
    if config.num_classes and config.num_classes != len(class_names):
        raise ConfigError(f"--num_classes={config.num_classes} but {labels_path} lists "
                          f"{len(class_names)} classes.")
    try:
        train_count = data_lib.count_examples(train_files)
        val_count = data_lib.count_examples(val_files)
    except (OSError, ValueError) as e:
        raise ConfigError(str(e).splitlines()[0]) from None
    for split, count, pattern in (("training", train_count, train_pattern),
                                  ("validation", val_count, val_pattern)):
        if not count:
            raise ConfigError(f"the {split} split has no clips ({pattern})")
    if config.batch_size > train_count:
        # A bigger batch would hold each clip several times and, scaled with it, the
        # learning rate would be far above what the data supports.
        raise ConfigError(f"--batch_size={config.batch_size} is larger than the training split "
                          f"({train_count} clips in {train_pattern}): use --batch_size="
                          f"{train_count} or less.")
    return TrainingData(train_files, val_files, class_names, train_count, val_count)


def is_annotated(serialized: bytes) -> bool:
    """Whether a training record carries attention supervision: boxes on some frame,
    action labels from a box file, or the synthetic ground truth converted to supervise."""
    example = tf.train.SequenceExample.FromString(serialized)
    lists = example.feature_lists.feature_list

    def any_set(key: str) -> bool:
        return key in lists and any(v for f in lists[key].feature for v in f.int64_list.value)

    def has_rows(key: str) -> bool:
        return key in lists and len(lists[key].feature) > 0

    context = example.context.feature
    truth_supervises = (tfrecord.GT_SUPERVISION not in context
                        or any(context[tfrecord.GT_SUPERVISION].int64_list.value))
    return (any_set(tfrecord.BOX_ANNOTATED) or has_rows(tfrecord.ACTIVE)
            or (truth_supervises and has_rows(tfrecord.GT_ACTIVE)))


def annotated_records(files: Sequence[str]) -> list[str]:
    """The training records that carry supervision (`is_annotated`), copied into one shard
    in a fresh temporary folder (removed at exit): the stream `--annotated_share` draws
    from. Records are streamed through (their frames are not decoded, and none is held
    beyond its own check, so a box file covering most of a large split costs disk, not
    memory). [] when there are none."""
    folder = tempfile.mkdtemp(prefix="stabn_annotated_")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = os.path.join(folder, "annotated.tfrecord")
    found = 0
    with tf.io.TFRecordWriter(path) as writer:
        for raw in tf.data.TFRecordDataset(files).as_numpy_iterator():
            if is_annotated(raw):
                writer.write(raw)
                found += 1
    return [path] if found else []


def build_model(config: TrainConfig, class_names: Sequence[str]) -> VideoClassifier:
    """The configured ST-ABN or baseline (call under the strategy's scope)."""
    common = dict(num_classes=len(class_names), num_frames=config.num_frames,
                  image_size=config.image_size, depth=config.depth,
                  width_multiplier=config.width_multiplier, dropout=config.dropout,
                  synchronized_bn=config.sync_bn, class_names=list(class_names))
    # keras.applications weights (ResNet v1) reproduce their network only in its layout.
    common["stride_in_1x1"] = parse_init(config.init).stride_in_1x1
    try:
        if config.model == "baseline":
            return build_baseline(**common)
        return build_stabn(**common, attention_head=config.attention_head,
                           fusion_relu=config.fusion_relu)
    except ValueError as e:  # the builder names the bad argument
        raise ConfigError(f"cannot build the model: {e}") from None


def _load_init(model: keras.Model, init: str) -> None:
    logging.info("%s", initialize(model, parse_init(init)))


@dataclasses.dataclass
class Execution:
    """Where and how a run executes: the strategy and this process's part in it."""

    strategy: object
    chief: bool
    task_type: str
    task_id: int

    @property
    def replicas(self) -> int:
        return self.strategy.num_replicas_in_sync


def setup_execution(config: TrainConfig) -> Execution:
    """The run's precision (`auto` becomes this machine's, which the run's config keeps;
    `train` sets its policy for the run only), seeds and the distribution strategy."""
    if config.precision == "auto":
        choice = choose_precision("auto")
        logging.info("%s", choice.describe())
        config.precision = choice.precision
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy, config.tpu)
    task_type, task_id = task_identity(strategy)
    execution = Execution(strategy, is_chief(strategy), task_type, task_id)
    if config.batch_size % execution.replicas:
        raise ConfigError(f"--batch_size={config.batch_size} is not divisible by the "
                          f"{execution.replicas} replicas.")
    return execution


def build_training_model(config: TrainConfig, data: TrainingData, execution: Execution,
                         steps_per_epoch: int) -> tuple[VideoClassifier, keras.Model]:
    """(the network that gets saved, the model `fit` runs), compiled with the recipe.

    With attention supervision, `fit` runs `explanation_model(model)` (the same layers, Ms
    and Mt as outputs too) with a loss on each map; otherwise the network itself.
    """
    with execution.strategy.scope():
        model = build_model(config, data.class_names)
        apply_weight_decay(model, config.weight_decay)
        fitted = explanation_model(model) if supervised(config) else model
    # Keras 3.15 cannot fit the model itself under MultiWorkerMirroredStrategy; a trainer
    # sharing its layers can (see `multi_worker_trainer`). `model` is what gets saved.
    trainer = multi_worker_trainer(fitted) if is_multi_worker(execution.strategy) else fitted
    extra_losses, extra_weights = {}, {}
    if supervised(config):
        extra_losses = {SPATIAL_ATTENTION: SpatialSupervisionLoss(),
                        TEMPORAL_ATTENTION: TemporalSupervisionLoss()}
        extra_weights = {SPATIAL_ATTENTION: config.attention_supervision_weight,
                         TEMPORAL_ATTENTION: config.temporal_supervision_weight}
    with execution.strategy.scope():
        optimizer = build_optimizer(
            global_batch_size=config.batch_size, steps_per_epoch=steps_per_epoch,
            epochs=config.epochs, base_lr=config.base_lr, momentum=config.momentum,
            nesterov=config.nesterov, schedule=config.schedule,
            decay_epochs=config.decay_epochs, warmup_epochs=config.warmup_epochs,
            clip_global_norm=config.clip_norm)
        compile_model(trainer, optimizer, label_smoothing=config.label_smoothing,
                      loss_weights={PERCEPTION: config.perception_loss_weight,
                                    ATTENTION: config.attention_loss_weight} | extra_weights,
                      extra_losses=extra_losses, jit_compile=config.jit_compile)
        trainer.optimizer.build(trainer.trainable_variables)  # here: its variables need the scope
        _load_init(model, config.init)
    return model, trainer


def make_datasets(config: TrainConfig, data: TrainingData, execution: Execution,
                  preprocessor: ClipPreprocessor, heads: Sequence[str], steps_per_epoch: int,
                  annotated_files: Sequence[str] = ()):
    """(training, validation): a function of where training starts (`BackupState`) giving
    the training dataset from there, and the validation dataset, both of the clips the
    model's `preprocessor` says (validation prepared by it). Labels for the model's
    heads only, and with attention supervision the packed box / active targets (training:
    the boxes of the `supervised_fraction` subset; validation: all of them, so its losses
    are comparable).

    Training comes in epochs of `steps_per_epoch` batches, each drawn from (seed, epoch)
    alone (`data.make_dataset(steps_per_epoch=...)`), so a run resumed at a backup's epoch
    and step gets the batches an uninterrupted run would have had. With `annotated_files`
    (`annotated_records`) and `--annotated_share`, each training batch is that share of
    clips from them (at least one) and the rest from all training clips, both streams
    drawn that way."""
    replicas = execution.replicas
    supervise = supervised(config)

    def targets_for(targets):
        out = {h: targets[h] for h in heads}
        return out | pack_targets(targets) if supervise else out

    def supervision(training: bool) -> dict:
        if not supervise:
            return {}
        return {"with_boxes": True, "supervision_seed": config.seed,
                "supervised_fraction": config.supervised_fraction if training else 1.0}

    def dataset(files, training, start: BackupState | None = None):
        def make(batch_size, input_context=None):
            # Several replicas: validation repeats so that every replica has a batch at
            # each of the fixed `validation_steps` (the last batch may repeat a few clips).
            epochs = dict(steps_per_epoch=steps_per_epoch, start_epoch=start.epoch,
                          start_step=start.step) if start else {}

            def stream(files, batch_size, seed):
                return data_lib.make_dataset(
                    files, preprocessor=preprocessor, training=training,
                    batch_size=batch_size, repeat=replicas > 1,
                    shuffle_buffer=config.shuffle_buffer, seed=seed,
                    input_context=input_context, **epochs, **supervision(training))

            share = config.annotated_share if training and annotated_files else 0.0
            annotated = min(batch_size - 1, max(1, round(share * batch_size))) if share else 0
            ds = stream(files, batch_size - annotated, config.seed)
            if annotated:
                # Its own seed: the two streams' augmentation draws stay independent.
                extra = stream(annotated_files, annotated, config.seed + 1)
                ds = tf.data.Dataset.zip((ds, extra)).map(
                    lambda a, b: tf.nest.map_structure(lambda x, y: tf.concat([x, y], 0),
                                                       a, b))
            return ds.map(lambda clips, targets: (clips, targets_for(targets)))

        if replicas == 1:
            return make(config.batch_size)
        # Each input pipeline (worker) reads its own files and batches per replica.
        return execution.strategy.distribute_datasets_from_function(
            lambda ctx: make(ctx.get_per_replica_batch_size(config.batch_size), ctx))

    return (lambda start: dataset(data.train_files, True, start),
            dataset(data.val_files, False))


def metric_name(heads: Sequence[str], head: str, metric: str) -> str:
    """Keras's log key for a head's metric: prefixed by the head only with several heads."""
    return f"{head}_{metric}" if len(heads) > 1 else metric


def _results_table(results: dict) -> str:
    lines = ["| head | top-1 (%) | top-5 (%) |", "|---|---|---|"]
    for head in (PERCEPTION, ATTENTION):
        if head in results:
            lines.append(f"| {head} | {100 * results[head]['top1']:.2f} | "
                         f"{100 * results[head]['top5']:.2f} |")
    return "\n".join(lines)


@contextlib.contextmanager
def _naming_corrupt_shards(data: TrainingData, backup_dir: str) -> Iterator[None]:
    """Turns tf.data's long error for a corrupt record (met mid-epoch: the clip count came
    from the converter's records of the shards) into one line naming the shard."""
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        problems = data_lib.verify_tfrecords(data.train_files + data.val_files)
        if not problems:
            raise
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise TrainingError(
            f"corrupt training data: {problems[0]}{more}; `python -m stabn_tf.data.convert "
            f"--verify --output_dir=<dir>` lists them all. Training stopped; "
            f"{_resume_from(backup_dir)}.") from e


def _resume_from(backup_dir: str) -> str:
    """Where a rerun resumes from, as a failure line says it: the backup only when one
    was written."""
    if RunBackup.exists(backup_dir):
        return f"it resumes from the last good backup, kept in {backup_dir}"
    return "no backup was written yet: it starts from the beginning"


@contextlib.contextmanager
def _one_line_write_errors(backup_dir: str) -> Iterator[None]:
    """A full disk (`DiskFullError`) or an output that became unwritable mid-run
    (`TrainingError`): one line naming the file and what a re-run resumes from (every
    file is written atomically, so nothing half-written is left behind)."""
    try:
        yield
    except DiskFullError as e:
        raise e.resuming(_resume_from(backup_dir)) from None
    except OSError as e:
        raise TrainingError(f"cannot write {e.filename or 'the run'}: {e.strerror or e}; "
                            f"fix it, then run the same command again "
                            f"({_resume_from(backup_dir)}).") from None


def run_settings(config: TrainConfig, data: TrainingData) -> dict:
    """The settings written to the run's config.json (JSON types: lists, not tuples)."""
    settings = dataclasses.asdict(config) | {"num_classes": len(data.class_names),
                                             "class_names": list(data.class_names)}
    return json.loads(json.dumps(settings, default=list))


def check_same_run(run: RunDirectory, settings: dict) -> None:
    """`ConfigError` naming every identity setting (`IDENTITY_SETTINGS`) that differs from
    the existing run's; settings the run's config predates are not compared."""
    try:
        previous = run.read_config()
    except RunError as e:
        raise ConfigError(f"{e}; pass --overwrite to start the run afresh") from None
    if previous is None:
        return
    if "precision" in previous:  # a run saved with an old spelling is the same run
        previous = {**previous, "precision": current_name(previous["precision"])}
    differences = []
    for name, value in settings.items():
        if name not in IDENTITY_SETTINGS or name not in previous or previous[name] == value:
            continue
        if name == "class_names":
            differences.append("the class names (labels.txt)")
        else:
            differences.append(f"--{name}={_flag_value(previous[name])} "
                               f"(now {_flag_value(value)})")
    if differences:
        raise ConfigError(
            f"{run.path} is a run with other settings: {', '.join(differences)}. Resume it "
            f"with its own settings, start it afresh with --overwrite, or choose another "
            f"--output_dir.")


class _StopAtEpoch(keras.callbacks.Callback):
    """Ends `fit` after epoch `end` - 1, though the log counts to `--epochs`."""

    def __init__(self, end: int):
        super().__init__()
        self.end = end

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.end:
            self.model.stop_training = True


def _flag_value(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) one training run; returns the final validation results."""
    check_config(config)
    data = resolve_data(config)
    run = RunDirectory(config.output_dir)
    run.check_writable()
    execution = setup_execution(config)
    # The run's precision is Keras's global dtype policy while it lasts; a caller in
    # Python gets its own policy back however the run ends.
    # One writer per run: the chief holds the run until it returns (other workers of a
    # multi-worker run write only their own backups).
    with dtype_policy(POLICIES[config.precision]), \
            run.lock() if execution.chief else contextlib.nullcontext():
        return _train_locked(config, data, run, execution)


def _train_locked(config: TrainConfig, data: TrainingData, run: RunDirectory,
                  execution: Execution) -> dict:
    steps_per_epoch = config.steps_per_epoch or max(1, data.train_count // config.batch_size)
    validation_steps = config.validation_steps or math.ceil(data.val_count / config.batch_size)
    logging.info("%d training clips, %d validation clips, %d classes; %d replica(s), global "
                 "batch %d, %d steps per epoch", data.train_count, data.val_count,
                 len(data.class_names), execution.replicas, config.batch_size, steps_per_epoch)
    model, trainer = build_training_model(config, data, execution, steps_per_epoch)
    settings = run_settings(config, data)
    if not config.overwrite:
        check_same_run(run, settings)
    heads = list(model.output)
    annotated_files = annotated_records(data.train_files) if config.annotated_share else []
    if config.annotated_share and not annotated_files:
        raise ConfigError(f"--annotated_share={config.annotated_share}: no training clip "
                          "carries boxes or action labels.")
    train_data_from, val_data = make_datasets(config, data, execution, model.preprocessor, heads,
                                               steps_per_epoch, annotated_files)
    explain_clips: list[Clip] = []
    if execution.chief and config.model == "stabn" and config.num_explain_clips:
        explain_clips = list(tfrecord_clips(data.val_files, model.preprocessor,
                                            max_clips=config.num_explain_clips))

    # Non-chief workers keep their own backup (all must restore the same state) and
    # write nothing else into the output directory.
    backup_dir = run.backup if execution.chief else os.path.join(
        run.backup, f"{execution.task_type}-{execution.task_id}")
    nan_guard = StopOnNaN(steps_per_epoch, config.precision)
    backup = RunBackup(backup_dir, config.backup_every_steps,
                       should_save=lambda: nan_guard.message is None)
    start = BackupState(0, 0)
    if not config.overwrite:
        with execution.strategy.scope(), _one_line_write_errors(backup_dir):
            state = backup.restore(trainer, log=lambda line: logging.warning("%s", line))
        if state is not None:
            start = state
            if state.step >= steps_per_epoch:  # --steps_per_epoch became smaller
                start = BackupState(state.epoch + 1, 0)
                logging.warning("the backup is at step %d of epoch %d, which now has %d "
                                "steps: training goes on with epoch %d", state.step,
                                state.epoch + 1, steps_per_epoch, start.epoch + 1)
            logging.info("resuming from the backup in %s at %s", backup_dir, state)
    monitor = "val_" + metric_name(heads, PERCEPTION, "top1")
    callbacks: list[keras.callbacks.Callback] = [nan_guard]  # the guard first
    if execution.chief:
        callbacks += [
            SaveBestModel(model, run.checkpoint("best"), monitor=monitor,
                          best=best_in_history(run.history, monitor, start.epoch)),
            HistoryLog(run.history),
            keras.callbacks.TensorBoard(run.logs, update_freq="epoch"),
        ]
        if explain_clips and config.explain_every_epochs:
            callbacks.append(AttentionImages(model, explain_clips, run.logs,
                                             config.explain_every_epochs))
    # The backup last: an epoch counts as done in it only once the epoch's history row and
    # best checkpoint are written (a signal between them resumes before, not after, them).
    callbacks.append(backup)

    def fit(first: BackupState, steps: int, last_epoch: int) -> None:
        """Epochs `first.epoch` to `last_epoch` (exclusive) of `steps` steps each, the
        first starting at step `first.step`."""
        for callback in (nan_guard, backup):
            callback.step_offset = first.step
        trainer.fit(train_data_from(first), epochs=config.epochs, steps_per_epoch=steps,
                    initial_epoch=first.epoch, validation_data=val_data,
                    validation_steps=validation_steps, verbose=config.verbose, shuffle=False,
                    callbacks=callbacks + ([_StopAtEpoch(last_epoch)]
                                           if last_epoch < config.epochs else []))

    # Everything is checked and built: only now does the run directory change.
    with _one_line_write_errors(backup_dir):
        if config.overwrite:
            if execution.chief:
                run.clear()
            shutil.rmtree(backup_dir, ignore_errors=True)
        if execution.chief:
            run.make_folders()
            run.write_config(settings)

        started = time.time()
        # Under the scope: the multi-worker trainer takes its strategy from the context.
        try:
            with execution.strategy.scope(), _naming_corrupt_shards(data, backup_dir):
                if start.step and start.epoch < config.epochs:
                    # Keras runs whole epochs: the rest of the resumed one on its own.
                    fit(start, steps_per_epoch - start.step, start.epoch + 1)
                    start = BackupState(start.epoch + 1, 0)
                if nan_guard.message is None and start.epoch < config.epochs:
                    fit(start, steps_per_epoch, config.epochs)
        except Interrupted as e:
            kept = (f"the last good backup ({backup.saved}) is kept in {backup_dir}"
                    if backup.saved else "no backup was written yet")
            e.message = (f"stopped by {e.signal_name}; {kept}: run the same command again to "
                         f"resume.")
            raise
        if nan_guard.message:
            raise TrainingError(f"{nan_guard.message} The last backup before it (if any) is "
                                f"kept in {backup_dir}.")
        train_seconds = time.time() - started

        with execution.strategy.scope():
            evaluation = trainer.evaluate(val_data, steps=validation_steps, return_dict=True,
                                          verbose=0)
        results = {h: {k: float(evaluation[metric_name(heads, h, k)]) for k in ("top1", "top5")}
                   for h in heads}
        results |= {"model": config.model, "num_clips": 1, "validation_clips": data.val_count,
                    "epochs": config.epochs, "train_seconds_this_run": round(train_seconds, 1)}
        if execution.chief:
            save_model_atomic(model, run.checkpoint("final"))
            run.write_results(results)
            backup.keep_latest_only()
            runner = KerasRunner(model, traced=False) if explain_clips else None
            for i, clip in enumerate(explain_clips):
                png = figure_png(prediction_figure(runner.predict(clip)))
                write_atomic(os.path.join(run.explanations, f"validation_clip_{i}.png"), png)
            print(f"\nValidation ({data.val_count} clips, single clip, {config.model}):\n"
                  f"{_results_table(results)}\nwritten to {config.output_dir}", flush=True)
        else:
            shutil.rmtree(backup_dir, ignore_errors=True)
    return results
