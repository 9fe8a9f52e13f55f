"""tf.distribute: Mirrored on two logical CPUs and two local multi-worker processes match
one device; under multi-worker only the chief writes."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import pytest

from stabn_tf.training.distribute import is_chief, make_strategy

# The tiny problem both comparisons train: fixed clips, a loss recorder, the same model.
TINY_PROBLEM = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import keras
    import stabn_tf
    from stabn_tf.training.recipe import compile_model

    # Float-order differences between one device and two replicas (~1e-6 at step 1) grow
    # as the tiny model trains; at 0.05 this model amplifies them to ~5e-3 by step 8 (pure
    # chaos: the first steps agree to 1e-5), at 0.03 to ~4e-4. A wrong reduction would
    # differ by far more from step 2 on.
    LEARNING_RATE = 0.03
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(32, 4, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 5, size=32)

    class Losses(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.losses = []
        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(logs["loss"]))

    def examples(rows):
        return tf.data.Dataset.from_tensor_slices(
            (clips[rows], {"perception": labels[rows], "attention": labels[rows]}))

    def tiny_stabn():  # call under the strategy's scope
        keras.utils.set_random_seed(0)
        return stabn_tf.build_stabn(num_classes=5, num_frames=4, image_size=32, depth=18,
                                    width_multiplier=0.125, dropout=0.0, synchronized_bn=True)
""")

MIRRORED_SCRIPT = textwrap.dedent("""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
""") + TINY_PROBLEM + textwrap.dedent("""
    def run(strategy):
        with strategy.scope():
            model = tiny_stabn()
            compile_model(model, keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        record = Losses()
        model.fit(examples(np.arange(32)).batch(8), epochs=2, callbacks=[record], verbose=0,
                  shuffle=False)
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


MULTI_WORKER_SCRIPT = TINY_PROBLEM + textwrap.dedent("""
    from stabn_tf.training.distribute import is_multi_worker, multi_worker_trainer

    single = sys.argv[1] == "single"
    strategy = (tf.distribute.get_strategy() if single
                else tf.distribute.MultiWorkerMirroredStrategy())
    with strategy.scope():
        model = tiny_stabn()
    trainer = model if single else multi_worker_trainer(model)
    with strategy.scope():
        compile_model(trainer, keras.optimizers.SGD(LEARNING_RATE, momentum=0.9))
        if not single:
            trainer.optimizer.build(trainer.trainable_variables)
    if single:
        data = examples(np.arange(32)).batch(8)
    else:
        # Worker i gets rows 4i..4i+3 of every global batch of 8.
        def shard(ctx):
            rows = [8 * b + 4 * ctx.input_pipeline_id + j for b in range(4) for j in range(4)]
            return examples(np.array(rows)).batch(4)
        data = strategy.distribute_datasets_from_function(shard)
    record = Losses()
    with strategy.scope():
        trainer.fit(data, epochs=2, callbacks=[record], verbose=0, shuffle=False)
    weights = float(sum(np.abs(w).sum() for w in model.get_weights()))
    print(json.dumps({"multi_worker": is_multi_worker(strategy), "losses": record.losses,
                      "weights": weights}))
""")


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker_envs(n):
    cluster = {"worker": [f"localhost:{port}" for port in _free_ports(n)]}
    return [{**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
             "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
            for i in range(n)]


def _run_together(commands, envs, timeout=600):
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for cmd, env in zip(commands, envs)]
    try:
        return [p.communicate(timeout=timeout) + (p.returncode,) for p in procs]
    finally:
        for p in procs:
            p.kill()


def test_multi_worker_over_loopback_follows_the_single_process_loss_trajectory():
    """Two worker processes (one replica each, half of every global batch) train the same
    model a single process trains on the whole batches: same losses, same weights."""
    script = [sys.executable, "-c", MULTI_WORKER_SCRIPT]
    workers = _run_together([script + ["worker"]] * 2, _worker_envs(2))
    single = subprocess.run(script + ["single"], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    for _, err, code in workers + [(single.stdout, single.stderr, single.returncode)]:
        assert code == 0, err[-3000:]
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _, _ in workers]
    one = json.loads(single.stdout.strip().splitlines()[-1])
    assert [r["multi_worker"] for r in runs] == [True, True] and not one["multi_worker"]
    assert len(one["losses"]) == 8 and one["losses"][-1] < one["losses"][0]
    for run in runs:
        for a, b in zip(one["losses"], run["losses"], strict=True):
            assert abs(a - b) <= 1e-3 * max(1.0, abs(a)), (one["losses"], run["losses"])
        assert run["weights"] == pytest.approx(one["weights"], rel=1e-4)
    assert runs[0]["weights"] == runs[1]["weights"]  # the workers hold one model


def test_multi_worker_cli_run_completes_and_only_the_chief_writes(tiny_tfrecords, tmp_path):
    """`--strategy=multi_worker` from TF_CONFIG, two local workers, each given its own output
    directory: the chief's has the checkpoints and results, the other's ends up empty."""
    outs = [tmp_path / "chief", tmp_path / "worker1"]
    commands = [[sys.executable, "-m", "stabn_tf.train", "--model=stabn", "--depth=18",
                 "--width_multiplier=0.125", "--num_frames=4", "--image_size=32",
                 "--batch_size=4", "--epochs=2", "--steps_per_epoch=2", "--num_explain_clips=2",
                 "--verbose=2", "--strategy=multi_worker",
                 f"--train_files={tiny_tfrecords}/train-*.tfrecord",
                 f"--val_files={tiny_tfrecords}/validation-*.tfrecord", f"--output_dir={out}"]
                for out in outs]
    results = _run_together(commands, _worker_envs(2))
    for _, err, code in results:
        assert code == 0, err[-3000:]
    chief_out = results[0][0]
    assert "| perception |" in chief_out and "| perception |" not in results[1][0]
    assert "Collective all_reduce" not in results[0][1]  # TF's INFO lines are kept quiet
    chief, worker = outs
    model = keras.saving.load_model(chief / "checkpoints" / "final.keras")
    assert set(model.output) == {"perception", "attention"}
    best = keras.saving.load_model(chief / "checkpoints" / "best.keras")
    assert type(best) is type(model)  # the network, not the multi-worker trainer
    assert json.loads((chief / "results.json").read_text())["perception"]["top5"] >= 0.0
    assert len(list((chief / "explanations").glob("*.png"))) == 2
    assert [p for p in worker.rglob("*") if p.is_file()] == []


def test_single_process_is_chief():
    assert is_chief(make_strategy("default"))
