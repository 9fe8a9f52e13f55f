"""benchmarks/correction_loop.py's wiring (the measurement itself takes minutes: see
docs/evaluation.md): the seed reaches the fine-tune, the recipe is the flag file, a checkpoint of
another seed is refused in one line, and `--draw=direct` writes a box file the converter
reads."""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "correction_loop.py"

# Runs in a fresh interpreter: the benchmark defines absl flags (--seed, --checkpoint)
# that other commands define too.
PROBE = """
import json, sys
sys.path.insert(0, {benchmarks!r})
import correction_loop as cl
from stabn_tf.data.boxes import load_box_files
cl.FLAGS(["correction_loop", "--seed=3", "--checkpoint={checkpoint}"])
truth = {{"7": {{"box": [[0, 0, 0, 0]] * 6 + [[0.1, 0.2, 0.5, 0.6]] * 18,
                 "active": [0] * 12 + [1] * 12}}}}
path, corrections, _ = cl.write_corrections(["7"], truth, 8, {work!r})
videos, problems = load_box_files([path], "both")
ran = []
cl._run = lambda args, log: ran.append(args) or (1.0, 2.0)
cl.fine_tune("/records", "/out", None, "/log")
print(json.dumps({{"corrections": corrections, "videos": sorted(videos),
                   "problems": len(problems),
                   "fine_tune": ran[0]}}))
"""


def test_direct_corrections_and_the_fine_tune_command(tmp_path, python):
    code = PROBE.format(benchmarks=str(ROOT / "benchmarks"), checkpoint="/ckpt.keras",
                        work=str(tmp_path))
    result = python("-c", code, env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    (clip,) = out["corrections"].values()
    # The 8 frames the model samples from 24; a box where the object is visible (from
    # frame 6 on), the sampled frames of the action (from frame 12 on).
    assert sorted(map(int, clip["frames"])) == [7, 10, 13, 16, 19, 22]
    assert clip["active_frames"] == [13, 16, 19, 22]
    assert out["videos"] == ["7"] and out["problems"] == 0
    args = out["fine_tune"]
    assert f"--flagfile={ROOT / 'configs' / 'correction_finetune.flags'}" in args
    assert "--seed=3" in args and "--init=/ckpt.keras" in args
    assert not any(a.startswith("--epochs") for a in args)  # the recipe's length


def test_a_checkpoint_of_another_seed_is_one_line(tmp_path, python):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "final.keras").write_bytes(b"")
    (run / "config.json").write_text(json.dumps({"seed": 1, "dataset": "synthetic"}))
    result = python(SCRIPT, "--seed=2", f"--checkpoint={run / 'checkpoints' / 'final.keras'}",
                    f"--work_dir={tmp_path / 'work'}", env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("--seed=2 but ")
    assert "was trained with --seed=1: pass that seed" in result.stderr
    assert "Traceback" not in result.stderr
