"""Training ST-ABN (or the baseline) with `model.fit`: the library behind `stabn_tf.train`.

Everything a run needs is in `TrainConfig`; `train(config)` checks it (before any
training starts), builds the strategy, data, model and callbacks, fits, evaluates on the
validation split and writes:

    output_dir/
      config.json              the settings used
      checkpoints/best.keras   best validation perception top-1
      checkpoints/final.keras  the model at the end (chief only)
      backup/                  crash-safe state; a re-run of the same command resumes here
      logs/                    TensorBoard: scalars (train/, validation/), attention images
      history.csv              one row per epoch
      results.json             final single-clip top-1/top-5 of both heads
      explanations/*.png       attention figures for a few validation clips
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence

import keras
from absl import logging

from stabn_tf import data as data_lib
from stabn_tf.data import synthetic
from stabn_tf.models.stabn import ATTENTION, PERCEPTION, build_baseline, build_stabn
from stabn_tf.training.callbacks import (
    AttentionImages,
    GuardedBackupAndRestore,
    SaveBestModel,
    StopOnNaN,
    render_explanations,
)
from stabn_tf.training.distribute import (
    is_chief,
    is_multi_worker,
    make_strategy,
    multi_worker_trainer,
    task_identity,
)
from stabn_tf.training.recipe import apply_weight_decay, build_optimizer, compile_model

MODELS = ("stabn", "baseline")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DATASETS = ("tfrecord", "synthetic")


class ConfigError(ValueError):
    """A setting or an input that makes the run impossible, found before training."""


class TrainingError(RuntimeError):
    """Training started but had to stop (e.g. a non-finite loss)."""


@dataclasses.dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe on SSv2 (DESIGN.md §5)."""

    output_dir: str = "runs/stabn"
    # data
    dataset: str = "tfrecord"
    train_files: str = ""
    val_files: str = ""
    labels: str = ""  # labels.txt; default: next to the training shards
    cache_dir: str = "data/cache"  # where --dataset=synthetic is generated
    synthetic_train_per_class: int = 48
    synthetic_val_per_class: int = 10
    synthetic_resolution: int = 128
    synthetic_frames: int = 24
    shuffle_buffer: int = 256
    # model
    model: str = "stabn"
    depth: int = 50
    width_multiplier: float = 1.0
    num_frames: int = 32
    image_size: int = 224
    num_classes: int = 0  # 0: as many as labels.txt lists
    dropout: float = 0.5
    attention_head: str = "per_frame"
    fusion_relu: bool = True
    init: str = "none"  # none | imagenet | path to a .keras / .weights.h5 file
    # optimisation
    batch_size: int = 64  # global, over all replicas
    epochs: int = 150
    steps_per_epoch: int = 0  # 0: one pass over the training split
    validation_steps: int = 0  # 0: the whole validation split
    base_lr: float = 0.01  # per 64 clips, scaled linearly with batch_size
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "step"
    decay_epochs: Sequence[int] = (75, 125)
    warmup_epochs: float = 0.0
    clip_norm: float = 20.0
    label_smoothing: float = 0.0
    perception_loss_weight: float = 1.0
    attention_loss_weight: float = 1.0
    # execution
    precision: str = "float32"
    jit_compile: bool = False
    strategy: str = "auto"
    tpu: str = ""
    sync_bn: bool = False
    seed: int = 0
    backup_every_steps: int = 0  # 0: back up at the end of every epoch
    explain_every_epochs: int = 1
    num_explain_clips: int = 3
    verbose: int = 1


def _check(config: TrainConfig) -> None:
    choices = {"model": MODELS, "precision": PRECISIONS, "dataset": DATASETS}
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise ConfigError(f"--{name}={getattr(config, name)!r}: must be one of {allowed}.")
    for name in ("batch_size", "epochs", "num_frames", "image_size"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(config, name)}.")
    from stabn_tf.models.inflate import InitError, parse_init

    try:
        init = parse_init(config.init)
    except InitError as e:
        raise ConfigError(str(e)) from None
    if init.from_resnet50 and (config.depth != 50 or config.width_multiplier != 1.0):
        raise ConfigError(f"--init={config.init} needs --depth=50 and --width_multiplier=1 "
                          "(ImageNet ResNet-50 weights).")


def load_run_config(checkpoint: str | os.PathLike) -> TrainConfig | None:
    """The settings of the run that wrote `checkpoint` (`<run>/checkpoints/x.keras`): its
    `config.json`, looked for next to the checkpoint and one folder up; None if absent."""
    here = os.path.dirname(os.path.abspath(checkpoint))
    for directory in (here, os.path.dirname(here)):
        path = os.path.join(directory, "config.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                values = json.load(f)
            fields = {f.name for f in dataclasses.fields(TrainConfig)}
            return TrainConfig(**{k: v for k, v in values.items() if k in fields})
    return None


def data_patterns(config: TrainConfig) -> tuple[str, str]:
    """The training and validation shard patterns of a config ("" where it names none); for
    the synthetic set, its cache (generated there first when missing)."""
    if config.dataset == "synthetic":
        root = synthetic.ensure_synthetic_tfrecords(
            config.cache_dir,
            num_train_per_class=config.synthetic_train_per_class,
            num_val_per_class=config.synthetic_val_per_class,
            resolution=config.synthetic_resolution, num_frames=config.synthetic_frames,
            seed=config.seed)
        return os.path.join(root, "train-*.tfrecord"), os.path.join(root, "validation-*.tfrecord")
    return config.train_files, config.val_files


def resolve_data(config: TrainConfig) -> tuple[list[str], list[str], list[str]]:
    """Training files, validation files and class names; errors name what is missing."""
    train_pattern, val_pattern = data_patterns(config)
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
    try:
        class_names = data_lib.read_labels(labels_path)
    except data_lib.LabelFileError as e:
        raise ConfigError(str(e)) from None
    if config.num_classes and config.num_classes != len(class_names):
        raise ConfigError(f"--num_classes={config.num_classes} but {labels_path} lists "
                          f"{len(class_names)} classes.")
    return train_files, val_files, class_names


def _check_output_dir(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as e:
        raise ConfigError(f"output directory {path!r} is not writable: {e.strerror}.") from None


def build_model(config: TrainConfig, num_classes: int) -> keras.Model:
    """The configured ST-ABN or baseline (call under the strategy's scope)."""
    common = dict(num_classes=num_classes, num_frames=config.num_frames,
                  image_size=config.image_size, depth=config.depth,
                  width_multiplier=config.width_multiplier, dropout=config.dropout,
                  synchronized_bn=config.sync_bn)
    from stabn_tf.models.inflate import parse_init

    # keras.applications weights (ResNet v1) reproduce their network only in its layout.
    common["stride_in_1x1"] = parse_init(config.init).stride_in_1x1
    if config.model == "baseline":
        return build_baseline(**common)
    return build_stabn(**common, attention_head=config.attention_head,
                       fusion_relu=config.fusion_relu)


def _load_init(model: keras.Model, init: str) -> None:
    from stabn_tf.models.inflate import InitError, initialize, parse_init

    try:
        logging.info("%s", initialize(model, parse_init(init)))
    except InitError as e:  # one line naming the file, key or layer
        raise ConfigError(str(e)) from None


def metric_name(heads: list[str], head: str, metric: str) -> str:
    """Keras's log key for a head's metric: prefixed by the head only with several heads."""
    return f"{head}_{metric}" if len(heads) > 1 else metric


def _trim_history(path: str, first_epoch: int) -> None:
    """Drop rows of epochs that will run again, so each epoch appears exactly once."""
    if not os.path.exists(path):
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < first_epoch]
    with open(path + ".tmp", "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(path + ".tmp", path)


def _explain_batch(val_files, config, num_clips: int):
    dataset = data_lib.make_dataset(val_files, training=False, num_frames=config.num_frames,
                                    image_size=config.image_size, batch_size=num_clips)
    clips, targets = next(iter(dataset))
    return clips.numpy(), targets[PERCEPTION].numpy()


def _results_table(results: dict) -> str:
    lines = ["| head | top-1 (%) | top-5 (%) |", "|---|---|---|"]
    for head in (PERCEPTION, ATTENTION):
        if head in results:
            lines.append(f"| {head} | {100 * results[head]['top1']:.2f} | "
                         f"{100 * results[head]['top5']:.2f} |")
    return "\n".join(lines)


def train(config: TrainConfig) -> dict:
    """Runs (or resumes) one training run; returns the final validation results."""
    _check(config)
    train_files, val_files, class_names = resolve_data(config)
    num_classes = len(class_names)
    _check_output_dir(config.output_dir)

    keras.mixed_precision.set_global_policy(config.precision)
    keras.utils.set_random_seed(config.seed)
    strategy = make_strategy(config.strategy, config.tpu)
    chief = is_chief(strategy)
    task_type, task_id = task_identity(strategy)
    replicas = strategy.num_replicas_in_sync
    if config.batch_size % replicas:
        raise ConfigError(f"--batch_size={config.batch_size} is not divisible by the "
                          f"{replicas} replicas.")

    train_count = data_lib.count_examples(train_files)
    steps_per_epoch = config.steps_per_epoch or max(1, train_count // config.batch_size)
    val_count = data_lib.count_examples(val_files)
    validation_steps = config.validation_steps or math.ceil(val_count / config.batch_size)
    logging.info("%d training clips, %d validation clips, %d classes; %d replica(s), global "
                 "batch %d, %d steps per epoch", train_count, val_count, num_classes, replicas,
                 config.batch_size, steps_per_epoch)

    out = config.output_dir
    paths = {name: os.path.join(out, name) for name in
             ("checkpoints", "backup", "logs", "explanations")}
    if chief:
        for name in ("checkpoints", "logs", "explanations"):
            os.makedirs(paths[name], exist_ok=True)
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(dataclasses.asdict(config) | {"num_classes": num_classes}, f, indent=2,
                      default=list)
    # Non-chief workers keep their own backup (all must restore the same state) and
    # write nothing else into the output directory.
    backup_dir = paths["backup"] if chief else os.path.join(paths["backup"],
                                                            f"{task_type}-{task_id}")

    with strategy.scope():
        try:
            model = build_model(config, num_classes)
        except ValueError as e:  # the builder names the bad argument
            raise ConfigError(f"cannot build the model: {e}") from None
        apply_weight_decay(model, config.weight_decay)
    # Keras 3.15 cannot fit the model itself under MultiWorkerMirroredStrategy; a trainer
    # sharing its layers can (see `multi_worker_trainer`). `model` is what gets saved.
    trainer = multi_worker_trainer(model) if is_multi_worker(strategy) else model
    with strategy.scope():
        optimizer = build_optimizer(
            global_batch_size=config.batch_size, steps_per_epoch=steps_per_epoch,
            epochs=config.epochs, base_lr=config.base_lr, momentum=config.momentum,
            nesterov=config.nesterov, schedule=config.schedule,
            decay_epochs=config.decay_epochs, warmup_epochs=config.warmup_epochs,
            clip_global_norm=config.clip_norm)
        compile_model(trainer, optimizer, label_smoothing=config.label_smoothing,
                      loss_weights={PERCEPTION: config.perception_loss_weight,
                                    ATTENTION: config.attention_loss_weight},
                      jit_compile=config.jit_compile)
        trainer.optimizer.build(trainer.trainable_variables)  # here: its variables need the scope
        _load_init(model, config.init)

    heads = list(model.output)

    def dataset(files, training):
        def make(batch_size, input_context=None):
            # Several replicas: validation repeats so that every replica has a batch at
            # each of the fixed `validation_steps` (the last batch may repeat a few clips).
            data = data_lib.make_dataset(
                files, training=training, num_frames=config.num_frames,
                image_size=config.image_size, batch_size=batch_size,
                repeat=training or replicas > 1, shuffle_buffer=config.shuffle_buffer,
                seed=config.seed, input_context=input_context)
            # Labels for the model's heads only (the baseline has no attention head).
            return data.map(lambda clips, targets: (clips, {h: targets[h] for h in heads}))

        if replicas == 1:
            return make(config.batch_size)
        # Each input pipeline (worker) reads its own files and batches per replica.
        return strategy.distribute_datasets_from_function(
            lambda ctx: make(ctx.get_per_replica_batch_size(config.batch_size), ctx))

    train_data, val_data = dataset(train_files, True), dataset(val_files, False)

    metadata_path = os.path.join(backup_dir, "training_metadata.json")
    initial_epoch = 0
    if os.path.exists(metadata_path):
        with open(metadata_path) as f:
            initial_epoch = int(json.load(f).get("epoch", 0))
        logging.info("resuming from the backup in %s at epoch %d", backup_dir, initial_epoch + 1)
    history_path = os.path.join(out, "history.csv")
    if chief:
        _trim_history(history_path, initial_epoch)

    nan_guard = StopOnNaN(steps_per_epoch, config.precision)
    callbacks: list[keras.callbacks.Callback] = [
        nan_guard,  # first: the backup must know before it saves
        GuardedBackupAndRestore(
            nan_guard, backup_dir, save_freq=config.backup_every_steps or "epoch",
            double_checkpoint=True, delete_checkpoint=False),
    ]
    if chief:
        callbacks += [
            SaveBestModel(model, os.path.join(paths["checkpoints"], "best.keras"),
                          monitor="val_" + metric_name(heads, PERCEPTION, "top1")),
            keras.callbacks.CSVLogger(history_path, append=True),
            keras.callbacks.TensorBoard(paths["logs"], update_freq="epoch"),
        ]

    # A few fixed validation clips, explained in TensorBoard during training and as PNGs
    # at the end.
    explain = None
    if chief and config.model == "stabn" and config.num_explain_clips:
        explain = _explain_batch(val_files, config, config.num_explain_clips)
        if config.explain_every_epochs:
            callbacks.append(AttentionImages(*explain, class_names, paths["logs"],
                                             config.explain_every_epochs))

    start = time.time()
    # Under the scope: the multi-worker trainer takes its strategy from the context.
    with strategy.scope():
        trainer.fit(train_data, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
                    validation_data=val_data, validation_steps=validation_steps,
                    callbacks=callbacks, verbose=config.verbose, shuffle=False)
    if nan_guard.message:
        raise TrainingError(f"{nan_guard.message} The last backup before it (if any) is "
                            f"kept in {backup_dir}.")
    train_seconds = time.time() - start

    with strategy.scope():
        evaluation = trainer.evaluate(val_data, steps=validation_steps, return_dict=True,
                                      verbose=0)
    results = {h: {k: float(evaluation[metric_name(heads, h, k)]) for k in ("top1", "top5")}
               for h in heads}
    results |= {"model": config.model, "num_clips": 1, "validation_clips": val_count,
                "epochs": config.epochs, "train_seconds_this_run": round(train_seconds, 1)}
    if chief:
        model.save(os.path.join(paths["checkpoints"], "final.keras"))
        with open(os.path.join(out, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
        if explain is not None:
            for i, png in enumerate(render_explanations(model, *explain, class_names)):
                with open(os.path.join(paths["explanations"], f"validation_clip_{i}.png"),
                          "wb") as f:
                    f.write(png)
        print(f"\nValidation ({val_count} clips, single clip, {config.model}):\n"
              f"{_results_table(results)}\nwritten to {out}", flush=True)
    else:
        shutil.rmtree(backup_dir, ignore_errors=True)
    return results
