"""Train ST-ABN or the baseline: `python -m stabn_tf.train --flagfile=configs/ssv2.flags`.

A thin absl front end over `stabn_tf.training.trainer.train`: every `TrainConfig` field is a flag
of the same name. Errors found before training (missing files, labels that disagree with
--num_classes, an unwritable output directory, settings that differ from the existing run's,
a run another process is training) print one line and exit with status 2, and so do faults
during training (a full disk, a non-finite loss). SIGINT (Ctrl-C) and SIGTERM stop it with one
line and status 130 / 143. Re-running the same command after any of these resumes from the
last good backup.
"""

from __future__ import annotations

import dataclasses
import logging
import sys

from absl import app, flags

from stabn_tf import cli
from stabn_tf.training.signals import Interrupted, interruptible
from stabn_tf.training.trainer import TrainConfig, train

HELP = {
    "output_dir": "Where checkpoints, logs, history.csv and results.json go.",
    "dataset": "tfrecord: --train_files/--val_files; synthetic: the built-in dataset, "
               "generated into --cache_dir when missing.",
    "train_files": "Glob(s) of training TFRecord shards.",
    "val_files": "Glob(s) of validation TFRecord shards.",
    "labels": "labels.txt (one class per line); default: next to the training shards.",
    "cache_dir": "Cache for --dataset=synthetic.",
    "synthetic_train_per_class": "Synthetic training videos per class.",
    "synthetic_val_per_class": "Synthetic validation videos per class.",
    "synthetic_resolution": "Synthetic video height in pixels.",
    "synthetic_frames": "Frames per synthetic video.",
    "shuffle_buffer": "Training records shuffled together (in blocks of this many).",
    "model": "stabn or baseline (the same 3D ResNet without the branches).",
    "depth": "ResNet depth: 18, 34, 50 or 101.",
    "width_multiplier": "Scales all channel counts (small configs).",
    "num_frames": "T, frames per clip.",
    "image_size": "Input height and width (multiple of 32).",
    "num_classes": "K; 0 takes it from labels.txt (and a different value is an error).",
    "dropout": "Dropout before the classifiers.",
    "attention_head": "per_frame (reference) or gap: the attention branch's scores.",
    "fusion_relu": "ReLU after the attention fusion (the paper's code has it).",
    "init": "none; imagenet (torchvision's ResNet-50 from the Hugging Face Hub, inflated; "
            "imagenet:<owner>/<repo> for another timm ResNet-50, imagenet:keras for "
            "Keras's); a .safetensors file; or a .keras / .weights.h5 checkpoint.",
    "batch_size": "Global batch size over all replicas.",
    "epochs": "Training epochs.",
    "steps_per_epoch": "0: one pass over the training split.",
    "validation_steps": "0: the whole validation split.",
    "base_lr": "Learning rate per 64 clips; scaled linearly with --batch_size.",
    "momentum": "SGD momentum.",
    "nesterov": "Nesterov momentum.",
    "weight_decay": "L2 on conv and dense kernels (PyTorch-style, before momentum).",
    "schedule": "step (×0.1 at --decay_epochs) or cosine.",
    "decay_epochs": "Epochs where the step schedule multiplies the lr by 0.1.",
    "warmup_epochs": "Linear warm-up length in epochs.",
    "clip_norm": "Clip gradients at this global norm (0: off).",
    "label_smoothing": "Label smoothing of both cross-entropies.",
    "perception_loss_weight": "Weight of the perception branch's cross-entropy.",
    "attention_loss_weight": "Weight of the attention branch's cross-entropy.",
    "attention_supervision_weight": "λ of the loss between Ms and the box masks on annotated "
                                    "frames (0: the paper's recipe; needs records with boxes).",
    "temporal_supervision_weight": "λ of the loss between Mt and the per-frame 'action "
                                   "happens' labels where the records have them (0: off).",
    "supervised_fraction": "Use the boxes/labels of this fixed, seeded fraction of the "
                           "training videos only ('a few annotated videos').",
    "precision": "float32, mixed_float16 or mixed_bfloat16.",
    "jit_compile": "Compile the train step with XLA.",
    "strategy": "auto, default, mirrored, multi_worker (TF_CONFIG) or tpu.",
    "tpu": "TPU address for --strategy=tpu.",
    "sync_bn": "Synchronise BN statistics across replicas.",
    "seed": "Seed of initialisation, data order and augmentation.",
    "backup_every_steps": "Crash-safe backup every N steps (a rerun resumes at that step, "
                          "with the same data); 0: at each epoch's end.",
    "explain_every_epochs": "Attention images to TensorBoard every N epochs (0: never).",
    "num_explain_clips": "Validation clips shown in the attention images.",
    "verbose": "Keras progress output: 0 silent, 1 progress bar, 2 one line per epoch.",
    "overwrite": "Start an existing run in --output_dir afresh (its checkpoints, backup, logs "
                 "and history are removed) instead of resuming it.",
}


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """One flag per `TrainConfig` field, typed by its default."""
    for field in dataclasses.fields(TrainConfig):
        default, name, text = field.default, field.name, HELP[field.name]
        if isinstance(default, bool):
            flags.DEFINE_bool(name, default, text, flag_values=flag_values)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, text, flag_values=flag_values)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, text, flag_values=flag_values)
        elif isinstance(default, str):
            flags.DEFINE_string(name, default, text, flag_values=flag_values)
        else:
            flags.DEFINE_list(name, [str(v) for v in default], text, flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
    values = {}
    for field in dataclasses.fields(TrainConfig):
        value = flag_values[field.name].value
        values[field.name] = tuple(int(v) for v in value) if isinstance(value, list) else value
    return TrainConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # TensorFlow's own INFO lines (one per collective all-reduce under a multi-worker
    # strategy) would bury the progress bars; its warnings still show.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
    try:
        with interruptible():
            train(config_from_flags())
    except Interrupted as e:
        print(f"stabn_tf.train: {e}", file=sys.stderr, flush=True)
        sys.exit(e.exit_code)


# ConfigError and TrainingError (StabnErrors) print one line and exit with status 2.
command = cli.Command("stabn_tf.train", main, define_flags, __doc__)

if __name__ == "__main__":
    command()
