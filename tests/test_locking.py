"""The one flock helper: another process's lock fails at once naming its holder, a shared
lock admits readers, a removed lock file is retaken, and a lock ends with its process."""

import os
import subprocess
import sys

from stabn_tf.locking import Flock

HOLD = """
import sys, time
from stabn_tf.locking import Flock
held = Flock(sys.argv[1], shared=sys.argv[2] == "shared", remove=sys.argv[2] == "remove")
assert held.acquire()
if sys.argv[2] == "remove":
    held.write("pid on a host")
print("held", flush=True)
sys.stdin.readline()
held.release()
print("released", flush=True)
time.sleep(60)
"""


def _holder(path, how):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path), how],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_held_directory_fails_at_once_naming_the_holder(tmp_path):
    holder = _holder(tmp_path, "exclusive")
    try:
        mine = Flock(str(tmp_path))
        assert not mine.acquire()
        assert mine.holder_pid == holder.pid and mine.fd is None
        assert not Flock(str(tmp_path), shared=True).acquire()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        with mine:
            assert mine.acquire() and mine.fd is not None
    finally:
        holder.kill()
        holder.wait()


def test_shared_locks_admit_readers_and_bar_a_writer(tmp_path):
    holder = _holder(tmp_path, "shared")
    try:
        with Flock(str(tmp_path), shared=True) as reader:
            assert reader.acquire()
        assert not Flock(str(tmp_path)).acquire()
    finally:
        holder.kill()
        holder.wait()
    with Flock(str(tmp_path)) as writer:  # the kernel dropped the killed holder's lock
        assert writer.acquire()


def test_a_lock_file_names_its_holder_and_goes_on_release(tmp_path):
    path = tmp_path / ".lock"
    holder = _holder(path, "remove")
    try:
        mine = Flock(str(path), remove=True)
        assert not mine.acquire()
        assert mine.holder_text == "pid on a host" and mine.holder_pid == holder.pid
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert not path.exists()
        with mine:
            assert mine.acquire()
            assert os.stat(path).st_ino == os.fstat(mine.fd).st_ino
        assert not path.exists()
    finally:
        holder.kill()
        holder.wait()
