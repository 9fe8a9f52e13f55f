"""Training callbacks of our own: NaN guard with a useful message, the best checkpoint and
the history written atomically, attention images."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.disk import write_atomic
from stabn_tf.explain.figures import figure_png
from stabn_tf.explain.render import prediction_figure
from stabn_tf.inference.inputs import Clip
from stabn_tf.inference.keras_runner import KerasRunner
from stabn_tf.models.stabn import VideoClassifier
from stabn_tf.runs import significant
from stabn_tf.training.backup import save_model_atomic


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss and keeps a message naming the step.

    Keras's `TerminateOnNaN` stops silently; a researcher needs where and what to try.
    """

    def __init__(self, steps_per_epoch: int, precision: str):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.precision = precision
        self.message: str | None = None
        self.step_offset = 0  # steps of the first epoch done before this `fit` (a resume)
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        batch += self.step_offset
        step = self._epoch * self.steps_per_epoch + batch + 1
        hints = ["lower --base_lr or add --warmup_epochs", "keep --clip_norm (20 by default)"]
        if self.precision == "float16":
            hints.append("try --precision=bfloat16 or float32")
        hints.append("check the input data (labels in range, frames decodable)")
        self.message = (f"loss became {loss} at epoch {self._epoch + 1}, step {batch + 1} "
                        f"(global step {step}); training stopped. Try: " + "; ".join(hints) + ".")
        self.model.stop_training = True


class SaveBestModel(keras.callbacks.Callback):
    """Saves `network` to `filepath` (atomically) whenever `monitor` beats its best so far.

    `best` is the best value of the epochs before a resume (from history.csv): Keras's
    `ModelCheckpoint` starts from -inf and would overwrite a better checkpoint with the
    first resumed epoch's. `network` is saved whatever model `fit` runs: under a
    multi-worker strategy that is a trainer wrapping it (`multi_worker_trainer`), and the
    checkpoint must be the network people load with `keras.saving.load_model`.
    """

    def __init__(self, network: keras.Model, filepath: str, monitor: str,
                 best: float = -math.inf):
        super().__init__()
        self.network = network
        self.filepath = filepath
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and float(value) > self.best:
            save_model_atomic(self.network, self.filepath)
            self.best = float(value)


class HistoryLog(keras.callbacks.Callback):
    """history.csv, one row per epoch, rewritten atomically at each epoch's end: a reader
    never sees half a row, and an epoch that runs again after a resume replaces its row
    (and drops any later ones) instead of adding a second.

    `epoch` counts from 1, as the training log does ("Epoch 1/150"). The other columns are
    Keras's logs, rounded to 6 significant digits: `loss` is what the optimizer minimises,
    the weighted sum of the head losses (`--*_loss_weight`, and the supervision losses'
    weights) plus the weight-decay penalty (`--weight_decay`/2 · Σ‖kernel‖²); each
    `<head>_loss` is that head's cross-entropy alone, unweighted. So `loss` is not the sum
    of the head losses. Training columns are means over the epoch's steps (the weights
    change from step to step), `val_` columns are the validation set at the epoch's end.
    """

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        number = epoch + 1
        rows = [row for row in read_history(self.path) if row["epoch"] < number]
        rows.append({"epoch": number} | {k: significant(float(v))
                                         for k, v in (logs or {}).items()})
        keys = sorted({k for row in rows for k in row} - {"epoch"})
        text = io.StringIO()
        writer = csv.DictWriter(text, ["epoch", *keys], restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, text.getvalue())


def read_history(path: str) -> list[dict]:
    """The rows of a history.csv ([] when there is none), `epoch` an int counted from 1.

    A history written before epochs were counted from 1 (its first row is epoch 0) is
    read as if it had been."""
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.DictReader(f) if row.get("epoch", "").isdigit()]
    shift = 1 if rows and int(rows[0]["epoch"]) == 0 else 0
    return [row | {"epoch": int(row["epoch"]) + shift} for row in rows]


def best_in_history(path: str, monitor: str, epochs_done: int) -> float:
    """The largest `monitor` value of the first `epochs_done` epochs (-inf if none)."""
    values = [float(row[monitor]) for row in read_history(path)
              if row["epoch"] <= epochs_done and row.get(monitor)]
    return max((v for v in values if math.isfinite(v)), default=-math.inf)


class AttentionImages(keras.callbacks.Callback):
    """Every `every_epochs` epochs: Figure 3 of each fixed validation clip to TensorBoard.

    `network` is the model being trained (under a multi-worker strategy, `fit` runs a
    trainer sharing its layers; the figures come from the network itself).
    """

    def __init__(self, network: VideoClassifier, clips: Sequence[Clip], log_dir: str,
                 every_epochs: int = 1):
        super().__init__()
        self.network = network
        self.clips = list(clips)
        self.every_epochs = max(1, every_epochs)
        self.log_dir = log_dir
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_epochs:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "attention"))
        images = [np.asarray(tf.io.decode_png(png))
                  for png in explanation_pngs(self.network, self.clips)]
        with self._writer.as_default():
            for i, image in enumerate(images):
                tf.summary.image(f"attention/clip_{i}", image[None], step=epoch + 1)
        self._writer.flush()


def explanation_pngs(network: VideoClassifier, clips: Sequence[Clip]) -> list[bytes]:
    """PNG bytes of Figure 3 for each clip, through the one runner and renderer."""
    # Called directly, not traced: under a multi-worker strategy only the chief draws, and
    # a traced or `predict` call would wait for the other workers.
    runner = KerasRunner(network, traced=False)
    return [figure_png(prediction_figure(runner.predict(clip))) for clip in clips]
