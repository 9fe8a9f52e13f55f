"""The pipeline benchmark script still runs (tiny settings; the real figures come from a
full run, see benchmarks/data_pipeline.py)."""

import json
import pathlib

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "data_pipeline.py"


@pytest.mark.slow
def test_benchmark_runs(tmp_path, python):
    out = tmp_path / "result.json"
    result = python(SCRIPT, f"--data_dir={tmp_path}", "--num_videos=3", "--frames_per_video=6",
                    "--height=48", "--width=64", "--num_frames=4", "--image_size=32",
                    "--batch_size=2", "--seconds=0.3", "--rounds=1", f"--json_out={out}",
                    timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ratio ours / naive" in result.stdout
    figures = json.loads(out.read_text())
    assert figures["ours_clips_per_s"] > 0 and figures["naive_clips_per_s"] > 0
