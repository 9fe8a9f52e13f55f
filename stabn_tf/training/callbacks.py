"""Training callbacks of our own: NaN guard with a useful message, attention images."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from stabn_tf.explain.figures import figure_png
from stabn_tf.explain.render import prediction_figure
from stabn_tf.inference.inputs import Clip
from stabn_tf.inference.keras_runner import KerasRunner
from stabn_tf.models.stabn import VideoClassifier


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first non-finite loss and keeps a message naming the step.

    Keras's `TerminateOnNaN` stops silently; a researcher needs where and what to try.
    """

    def __init__(self, steps_per_epoch: int, precision: str):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.precision = precision
        self.message: str | None = None
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(float(loss)):
            return
        step = self._epoch * self.steps_per_epoch + batch + 1
        hints = ["lower --base_lr or add --warmup_epochs", "keep --clip_norm (20 by default)"]
        if self.precision == "mixed_float16":
            hints.append("try --precision=mixed_bfloat16 or float32")
        hints.append("check the input data (labels in range, frames decodable)")
        self.message = (f"loss became {loss} at epoch {self._epoch + 1}, step {batch + 1} "
                        f"(global step {step}); training stopped. Try: " + "; ".join(hints) + ".")
        self.model.stop_training = True


class GuardedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`BackupAndRestore` that stops saving once `guard` saw a non-finite loss.

    Keras still ends the epoch after `stop_training`, and a plain backup would then
    overwrite the last good state with NaN weights, which a re-run would resume from.
    Put `guard` before this callback.
    """

    def __init__(self, guard: StopOnNaN, backup_dir: str, **kwargs):
        super().__init__(backup_dir, **kwargs)
        self.guard = guard

    def on_train_batch_end(self, batch, logs=None):
        if self.guard.message is None:
            super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.guard.message is None:
            super().on_epoch_end(epoch, logs)


class SaveBestModel(keras.callbacks.ModelCheckpoint):
    """`ModelCheckpoint(save_best_only=True)` that saves `network`, whatever model is fit.

    Under a multi-worker strategy `fit` runs a trainer that wraps the network
    (`stabn_tf.training.distribute.multi_worker_trainer`); the checkpoint must still be the
    network people load with `keras.saving.load_model`.
    """

    def __init__(self, network: keras.Model, filepath: str, monitor: str, mode: str = "max"):
        super().__init__(filepath, monitor=monitor, mode=mode, save_best_only=True)
        self.network = network

    def set_model(self, model):
        super().set_model(self.network)


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
