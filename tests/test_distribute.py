"""tf.distribute: Mirrored on two logical CPUs matches one device; multi-worker is refused."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from stabn_tf.distribute import is_chief, make_strategy

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    import stabn_tf
    from stabn_tf.recipe import compile_model

    rng = np.random.default_rng(0)
    clips = rng.normal(size=(32, 4, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 5, size=32)

    class Losses(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []
        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    def run(strategy):
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = stabn_tf.build_stabn(num_classes=5, num_frames=4, image_size=32, depth=18,
                                         width_multiplier=0.125, dropout=0.0,
                                         synchronized_bn=True)
            compile_model(model, keras.optimizers.SGD(0.05, momentum=0.9))
        data = tf.data.Dataset.from_tensor_slices(
            (clips, {"perception": labels, "attention": labels})).batch(8)
        record = Losses()
        model.fit(data, epochs=2, callbacks=[record], verbose=0, shuffle=False)
        return record.losses

    one = run(tf.distribute.OneDeviceStrategy("/cpu:0"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = run(mirrored)
    print(json.dumps({"replicas": mirrored.num_replicas_in_sync, "one": one, "two": two}))
""")


def test_mirrored_two_cpus_follows_the_single_device_loss_trajectory():
    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], capture_output=True,
                            text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(result.stdout.strip().splitlines()[-1])
    assert runs["replicas"] == 2
    one, two = runs["one"], runs["two"]
    assert len(one) == len(two) == 8
    assert one[-1] < one[0]  # it trains
    for a, b in zip(one, two):
        assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (one, two)


def test_multi_worker_is_refused_with_the_reason_before_anything_runs(tmp_path):
    from stabn_tf.training import ConfigError, TrainConfig, train

    with pytest.raises(ConfigError, match="keras-team/keras#20585"):
        train(TrainConfig(strategy="multi_worker", output_dir=str(tmp_path)))
    assert not any(tmp_path.iterdir())


def test_single_process_is_chief():
    assert is_chief(make_strategy("default"))
