"""Evaluation at split size: an interrupted evaluation (signal, full disk) resumes from its
last finished batch to the uninterrupted run's results; other settings are refused in one
line; the per-video scores are a few numbers; progress says the time left; local devices
and several processes give the one-process results."""

import errno
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

import stabn_tf
from stabn_tf import evaluate as ev
from stabn_tf.data import read_labels
from stabn_tf.disk import DiskFullError
from stabn_tf.evaluate import state as state_lib
from stabn_tf.evaluate.progress import Progress
from stabn_tf.training.signals import Interrupted

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def checkpoint(tiny_tfrecords, tmp_path_factory):
    """A tiny ST-ABN with seeded weights for the tiny set's classes, as a .keras file."""
    keras.utils.set_random_seed(5)
    model = stabn_tf.STABN.from_preset(
        "stabn_tiny", class_names=read_labels(os.path.join(tiny_tfrecords, "labels.txt")))
    path = tmp_path_factory.mktemp("resume") / "stabn.keras"
    model.save(path)
    return str(path)


def _settings(checkpoint, tiny_tfrecords, **overrides):
    """All three tables, small: both kinds of pass, both shards, several batches each."""
    return {"checkpoint": checkpoint, "files": f"{tiny_tfrecords}/validation-*.tfrecord",
            "tables": ["table1", "table2", "explanation"], "num_clips": [2],
            "invert": ["both"], "batch_size": 2, "max_videos": 8, "explain_max_videos": 4,
            "deletion_grid": 2, "gradcam_layers": ["res5"], "precision": "float32",
            "log": lambda line: None, "progress": False, **overrides}


class StopAfter:
    """`on_batch` hook: raises what `make()` gives once `count` batches are kept."""

    def __init__(self, count, make=lambda: Interrupted(signal.SIGTERM)):
        self.count, self.make, self.seen = count, make, []

    def __call__(self, key, where):
        self.seen.append((key, where.shard, where.batch))
        if len(self.seen) == self.count:
            raise self.make()


@pytest.mark.slow
def test_interrupted_evaluation_resumes_to_the_uninterrupted_results(
        checkpoint, tiny_tfrecords, tmp_path, monkeypatch):
    reference, out = tmp_path / "reference", tmp_path / "resumed"
    every = StopAfter(0)
    ev.run(**_settings(checkpoint, tiny_tfrecords), output_dir=str(reference), on_batch=every)
    expected = (reference / "results.json").read_text()
    assert not (reference / state_lib.PARTIAL).exists()  # gone once the results are written
    total = len(every.seen)
    passes = sorted({key for key, _, _ in every.seen})
    assert len(passes) == 3  # table1, table2, quality

    # 1. SIGTERM after 3 batches (in the first pass).
    stop = StopAfter(3)
    with pytest.raises(Interrupted) as stopped:
        ev.run(**_settings(checkpoint, tiny_tfrecords), output_dir=str(out), on_batch=stop)
    message = str(stopped.value)
    assert message == (f"stopped by SIGTERM; the finished batches are kept in "
                       f"{out / state_lib.PARTIAL}: run the same command again to resume")
    assert not (out / "results.json").exists()

    # 2. Other settings are refused in one line naming them; nothing kept is touched.
    kept = sorted(p.name for p in (out / state_lib.PARTIAL).rglob("*"))
    with pytest.raises(ev.EvaluationError) as refused:
        ev.run(**_settings(checkpoint, tiny_tfrecords, seed=1, batch_size=3),
               output_dir=str(out))
    text = str(refused.value)
    assert "\n" not in text and "--batch_size=2 (now 3)" in text and "--seed=0 (now 1)" in text
    assert "--restart" in text
    assert sorted(p.name for p in (out / state_lib.PARTIAL).rglob("*")) == kept

    # 3. The disk fills up 4 writes later (a later shard or pass).
    real_write, writes = state_lib.write_atomic, []

    def filling(path, data):
        writes.append(path)
        if len(writes) == 5:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        real_write(path, data)

    monkeypatch.setattr(state_lib, "write_atomic", filling)
    resumed = StopAfter(0)
    with pytest.raises(DiskFullError) as full:
        ev.run(**_settings(checkpoint, tiny_tfrecords), output_dir=str(out), on_batch=resumed)
    assert "the disk is full" in str(full.value) and "\n" not in str(full.value)
    assert "the finished batches are kept in" in str(full.value)
    monkeypatch.setattr(state_lib, "write_atomic", real_write)
    assert resumed.seen[0] == every.seen[3]  # it went on after the last kept batch

    # 4. The same command finishes it: the remaining batches only, the same results.
    rest = StopAfter(0)
    said = []
    ev.run(**{**_settings(checkpoint, tiny_tfrecords), "log": said.append},
           output_dir=str(out), on_batch=rest)
    # Every batch scored once, but the one whose scores the full disk refused.
    assert total <= len(stop.seen) + len(resumed.seen) + len(rest.seen) <= total + 1
    assert rest.seen == every.seen[-len(rest.seen):]
    assert any(line.startswith("resuming the unfinished evaluation in ") for line in said)
    assert (out / "results.json").read_text().replace(str(out), str(reference)) == expected
    assert not (out / state_lib.PARTIAL).exists()


def test_restart_drops_the_kept_batches(checkpoint, tiny_tfrecords, tmp_path):
    out = tmp_path / "out"
    small = dict(tables=["table1"], max_videos=6)
    with pytest.raises(Interrupted):
        ev.run(**_settings(checkpoint, tiny_tfrecords, **small), output_dir=str(out),
               on_batch=StopAfter(2))
    counted = StopAfter(0)
    ev.run(**_settings(checkpoint, tiny_tfrecords, **small, seed=4), output_dir=str(out),
           restart=True, on_batch=counted)
    assert len(counted.seen) == 3  # all 6 videos again, 2 per batch
    assert json.loads((out / "results.json").read_text())["table1"][
        "3D ResNet-18 ×0.125 + ST-ABN"]["videos"] == 6


@pytest.mark.slow
def test_table2_takes_the_models_own_setting_from_table1(checkpoint, tiny_tfrecords,
                                                         tmp_path):
    """"none" (the setting the model runs with) is Table 1's pass at the first clip count:
    no second pass over the split, the same numbers."""
    out = tmp_path / "out"
    counted = StopAfter(0)
    ev.run(**_settings(checkpoint, tiny_tfrecords, tables=["table1", "table2"],
                       invert=["none", "both"], max_videos=4),
           output_dir=str(out), on_batch=counted)
    assert sorted({key for key, _, _ in counted.seen}) == ["table1-stabn-2clip", "table2-both"]
    results = json.loads((out / "results.json").read_text())
    perception = results["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["2"]["perception"]
    assert results["table2"]["none"] == perception
    assert set(results["table2"]["both"]) == set(perception)


def test_kept_scores_are_a_few_numbers_per_video(checkpoint, tiny_tfrecords, tmp_path):
    """What is kept per video does not depend on the number of classes or the clips'
    size: a rank and a probability per head; per frame a few scores per method."""
    out = tmp_path / "out"
    with pytest.raises(Interrupted):
        ev.run(**_settings(checkpoint, tiny_tfrecords), output_dir=str(out),
               on_batch=StopAfter(1))
    (batch,) = (out / state_lib.PARTIAL).rglob("*.npz")
    with np.load(batch) as kept:
        assert {name: kept[name].shape for name in kept.files} == {
            "perception/rank": (2,), "perception/p_true": (2,),
            "attention/rank": (2,), "attention/p_true": (2,)}


def test_true_class_rank_is_topk_accuracys_order():
    rng = np.random.default_rng(0)
    probs = rng.integers(0, 4, size=(200, 7)).astype(np.float32)  # many ties
    labels = rng.integers(0, 7, size=200)
    ranks = ev.true_class_rank(probs, labels)
    for k in (1, 2, 5, 7):
        assert (ranks < k).mean() == ev.topk_accuracy(probs, labels, k)


def test_progress_logs_the_time_left_when_not_a_terminal(monkeypatch):
    lines = []
    clock = itertools.chain([0.0, 10.0], itertools.repeat(40.0))
    monkeypatch.setattr(time, "monotonic", lambda: next(clock))
    progress = Progress("Table 1", total=100, done=20, log=lines.append, bar=False,
                        interval=30)
    progress.update(10)  # t=10: no line yet
    progress.update(20)  # t=40: 30 videos in 40 s
    assert lines == ["Table 1: 50/100 videos, 0.75 videos/s, about 1m07s left"]


MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from stabn_tf import evaluate as ev
    checkpoint, files = sys.argv[1:3]
    common = dict(checkpoint=checkpoint, files=files, tables=["table1", "explanation"],
                  num_clips=[2], batch_size=5, explain_max_videos=3, deletion_grid=2,
                  gradcam_layers=["res5"], precision="float32", log=lambda line: None,
                  progress=False)
    one = ev.run(strategy="default", **common)
    two = ev.run(strategy=tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), **common)
    mirrored = ev.run(strategy="mirrored", **common)  # one CPU device: the same code path
    print(json.dumps([{k: r[k] for k in ("table1", "explanation")}
                      for r in (one, two, mirrored)]))
""")


def _close(a, b):
    """Nested results equal, numbers to float noise (NaN equal to NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return bool(np.isclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True))
    return a == b


@pytest.mark.slow
def test_two_local_devices_give_the_one_device_results(checkpoint, tiny_tfrecords, python):
    # A fresh process: the CPU is split in two before TensorFlow starts.
    result = python("-c", MIRRORED_SCRIPT, checkpoint, f"{tiny_tfrecords}/validation-*.tfrecord",
                    timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two, mirrored = json.loads(result.stdout.strip().splitlines()[-1])
    assert one["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["videos"] == 12
    assert _close(one, two), (one, two)
    assert _close(one, mirrored), (one, mirrored)


def _cluster_envs(count):
    """TF_CONFIG of `count` local worker processes on free loopback ports."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    cluster = {"worker": [f"localhost:{s.getsockname()[1]}" for s in sockets]}
    for s in sockets:
        s.close()
    return [{**ENV, "TF_CONFIG": json.dumps({"cluster": cluster,
                                             "task": {"type": "worker", "index": i}})}
            for i in range(count)]


@pytest.mark.slow
@pytest.mark.e2e  # the workers are processes of their own; the one-process reference is not
def test_two_workers_merge_into_the_one_process_results(checkpoint, tiny_tfrecords,
                                                        tmp_path, run_command):
    """`--strategy=multi_worker`: each of two processes scores one of the two shards, the
    chief (worker 0) writes the merged results: those of one process, to the byte."""
    def args(out, *extra):
        return ["stabn_tf.evaluate", f"--checkpoint={checkpoint}",
                f"--files={tiny_tfrecords}/validation-*.tfrecord", "--num_clips=1",
                "--tables=table1,explanation", "--batch_size=2", "--explain_max_videos=7",
                "--deletion_grid=2", "--gradcam_layers=res5", "--precision=float32",
                f"--output_dir={out}", *extra]

    outs = [tmp_path / "chief", tmp_path / "worker1"]
    procs = [subprocess.Popen([sys.executable, "-m", *args(out, "--strategy=multi_worker")],
                              env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for out, env in zip(outs, _cluster_envs(2), strict=True)]
    try:
        single = run_command(*args(tmp_path / "single"))  # meanwhile: the workers wait a lot
        finished = [p.communicate(timeout=900) + (p.returncode,) for p in procs]
    finally:
        for p in procs:
            p.kill()
    for _, err, code in finished + [(single.stdout, single.stderr, single.returncode)]:
        assert code == 0, err[-3000:]
    assert "process 1 of 2" in finished[0][1] and "process 2 of 2" in finished[1][1]
    assert "| Model | Frames |" in finished[0][0] and "| Model |" not in finished[1][0]
    expected = (tmp_path / "single" / "results.json").read_text()
    assert (outs[0] / "results.json").read_text() == expected
    assert [p for p in outs[1].rglob("*") if p.is_file()] == []  # nothing left there


@pytest.mark.slow
@pytest.mark.e2e  # SIGTERM needs a process of its own; the resumed run does not
def test_sigterm_stops_the_command_in_one_line_and_it_resumes(checkpoint, tiny_tfrecords,
                                                                tmp_path, run_command):
    out = tmp_path / "out"
    args = ["stabn_tf.evaluate", f"--checkpoint={checkpoint}",
            f"--files={tiny_tfrecords}/validation-*.tfrecord", "--tables=table1",
            "--num_clips=1,2", "--batch_size=1", f"--output_dir={out}", "--precision=float32"]
    proc = subprocess.Popen([sys.executable, "-m", *args], env=ENV, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not list(out.glob(f"{state_lib.PARTIAL}/*/*.npz")) and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"stabn_tf.evaluate: stopped by SIGTERM; the finished batches are kept in "
        f"{out / state_lib.PARTIAL}: run the same command again to resume")
    again = run_command(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming the unfinished evaluation" in again.stderr
    assert re.search(r"Table 1: .*: \d+/12 videos", again.stderr)  # progress, no terminal
    results = json.loads((out / "results.json").read_text())
    assert results["table1"]["3D ResNet-18 ×0.125 + ST-ABN"]["videos"] == 12
