"""tf.distribute: Mirrored on two logical CPUs and two local multi-worker processes match
one device; under multi-worker only the chief writes.

What the comparisons check is the reduction: two replicas, each on half of a global batch,
must make the same weight update as one device on the whole batch. That is read off the
first step's update, variable by variable. A longer loss trajectory is no test of it:
the one-device and the two-replica runs sum in different orders (~1e-6 apart at step 1),
and a few steps of training amplify that noise by an amount that depends on the CPU's
kernels (on an AMX Xeon: 1e-2 of some variables' update at step 2, 0.7 % of the loss by
step 5), while a wrong reduction changes the very first update by its whole size.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap

import keras
import numpy as np
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

    LEARNING_RATE = 0.03
    rng = np.random.default_rng(0)
    clips = rng.normal(size=(32, 4, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 5, size=32)

    class Record(keras.callbacks.Callback):
        # Every step's loss; the weights before training and after its first step.
        def on_train_begin(self, logs=None):
            self.losses, self.weights = [], [self.model.get_weights()]
        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(float(np.ravel(logs["loss"])[0]))
            if len(self.weights) == 1:
                self.weights.append(self.model.get_weights())

    def save(path, record, **extra):
        # The recorded weights go to `path` (npz), the rest is the last stdout line.
        np.savez(path, **{f"step{s}_{i}": w for s, ws in enumerate(record.weights)
                          for i, w in enumerate(ws)})
        print(json.dumps({"losses": record.losses, **extra}))

    def examples(rows):
        return tf.data.Dataset.from_tensor_slices(
            (clips[rows], {"perception": labels[rows], "attention": labels[rows]}))

    def tiny_stabn():  # call under the strategy's scope
        keras.utils.set_random_seed(0)
        return stabn_tf.STABN.from_preset("stabn_tiny", num_classes=5, dropout=0.0,
                                          synchronized_bn=True)
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
        record = Record()
        model.fit(examples(np.arange(32)).batch(8), epochs=2, callbacks=[record], verbose=0,
                  shuffle=False)
        return record

    save(sys.argv[1], run(tf.distribute.OneDeviceStrategy("/cpu:0")), role="one")
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    save(sys.argv[2], run(mirrored), role="two", replicas=mirrored.num_replicas_in_sync)
""")


# The replicas' first update may differ from one device's by float-order noise only:
# measured on an AMX Xeon, ≤3.3e-5 of the update's norm (the worst variable). A mean taken
# as a sum is off by 1.0; a replica that kept its own gradient (one device on half of
# each batch) by up to 3.5 (median 1.15). Updates that should be ~0 (a BN's moving mean of
# normalised inputs, ~1e-8) are pure noise, hence the absolute floor.
UPDATE_TOLERANCE = 1e-3
UPDATE_FLOOR = 1e-6


def _weights(path) -> list[list]:
    """The npz of `save()` as [start, after step 1][variable] arrays."""
    with np.load(path) as data:
        count = len(data.files) // 2
        return [[data[f"step{step}_{i}"] for i in range(count)] for step in (0, 1)]


def assert_same_first_update(reference, candidate) -> None:
    """Every variable's first update agrees to UPDATE_TOLERANCE of its norm."""
    for i, (start, ref, got_start, got) in enumerate(zip(*reference, *candidate, strict=True)):
        expected, update = ref - start, got - got_start
        scale = float(np.linalg.norm(expected))
        error = float(np.linalg.norm(update - expected))
        assert error <= UPDATE_TOLERANCE * scale + UPDATE_FLOOR, (
            f"variable {i} {start.shape}: first update differs by {error:.3g} "
            f"(its norm {scale:.3g})")


@pytest.mark.slow
def test_mirrored_two_cpus_makes_the_single_device_updates(tmp_path, python):
    one_path, two_path = tmp_path / "one.npz", tmp_path / "two.npz"
    # A fresh process: the CPU is split in two before TensorFlow starts.
    result = python("-c", MIRRORED_SCRIPT, one_path, two_path, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (json.loads(line) for line in result.stdout.strip().splitlines()[-2:])
    assert two["replicas"] == 2
    assert len(one["losses"]) == len(two["losses"]) == 8
    assert one["losses"][-1] < one["losses"][0]  # it trains
    assert two["losses"][0] == pytest.approx(one["losses"][0], rel=1e-5)  # same forward pass
    assert_same_first_update(_weights(one_path), _weights(two_path))


MULTI_WORKER_SCRIPT = TINY_PROBLEM + textwrap.dedent("""
    from stabn_tf.training.distribute import is_multi_worker, multi_worker_trainer

    single = sys.argv[1] == "single"
    out_path = sys.argv[2]
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
    record = Record()
    with strategy.scope():
        trainer.fit(data, epochs=2, callbacks=[record], verbose=0, shuffle=False)
    final = float(sum(np.abs(w).sum() for w in model.get_weights()))
    save(out_path, record, multi_worker=is_multi_worker(strategy), final=final)
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


@pytest.mark.slow
@pytest.mark.e2e  # three processes of their own
def test_multi_worker_over_loopback_makes_the_single_process_updates(tmp_path):
    """Two worker processes (one replica each, half of every global batch) update the
    model as a single process does on the whole batches, and hold one model."""
    script = [sys.executable, "-c", MULTI_WORKER_SCRIPT]
    paths = [tmp_path / f"worker{i}.npz" for i in range(2)]
    # The single-process reference runs beside the workers (they wait on each other a lot).
    *workers, single = _run_together(
        [script + ["worker", path] for path in paths]
        + [script + ["single", tmp_path / "single.npz"]],
        _worker_envs(2) + [{**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}])
    for _, err, code in workers + [single]:
        assert code == 0, err[-3000:]
    runs = [json.loads(out.strip().splitlines()[-1]) for out, _, _ in workers]
    one = json.loads(single[0].strip().splitlines()[-1])
    assert [r["multi_worker"] for r in runs] == [True, True] and not one["multi_worker"]
    assert len(one["losses"]) == 8 and one["losses"][-1] < one["losses"][0]
    reference = _weights(tmp_path / "single.npz")
    for run, path in zip(runs, paths, strict=True):
        assert len(run["losses"]) == 8
        assert run["losses"][0] == pytest.approx(one["losses"][0], rel=1e-5)
        assert_same_first_update(reference, _weights(path))
    assert runs[0]["final"] == runs[1]["final"]  # the workers hold one model


@pytest.mark.slow
@pytest.mark.e2e  # the workers are processes of their own
def test_multi_worker_cli_run_completes_and_only_the_chief_writes(tiny_tfrecords, tmp_path):
    """`--strategy=multi_worker` from TF_CONFIG, two local workers, each given its own output
    directory: the chief's has the checkpoints and results, the other's ends up empty."""
    outs = [tmp_path / "chief", tmp_path / "worker1"]
    commands = [[sys.executable, "-m", "stabn_tf.train", "--preset=stabn_tiny", "--epochs=2",
                 "--steps_per_epoch=2", "--num_explain_clips=2",
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
