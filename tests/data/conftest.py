"""Fixtures for the data tests: one tiny synthetic dataset, generated and converted once."""

from __future__ import annotations

import shutil

import pytest

RAW_SETTINGS = dict(num_train_per_class=2, num_val_per_class=1, resolution=48, num_frames=12,
                    seed=7, workers=1, progress=False)


@pytest.fixture(scope="session")
def synthetic_raw(tmp_path_factory) -> str:
    """The synthetic set in the SSv2 layout: 12 classes × (2 train + 1 validation)."""
    from stabn_tf.data import synthetic

    root = str(tmp_path_factory.mktemp("ssv2_raw"))
    synthetic.generate_synthetic_dataset(root, **RAW_SETTINGS)
    return root


@pytest.fixture(scope="session")
def converted(synthetic_raw, tmp_path_factory) -> tuple[str, dict]:
    """(output dir, manifest) of converting `synthetic_raw` in this process."""
    from stabn_tf.data import convert

    out = str(tmp_path_factory.mktemp("ssv2_tfrecords"))
    manifest = convert.convert_dataset("ssv2", synthetic_raw, out, workers=1, num_shards=3,
                                       progress=False)
    return out, manifest


@pytest.fixture
def raw_copy(synthetic_raw, tmp_path) -> str:
    """A private, modifiable copy of `synthetic_raw`."""
    dst = str(tmp_path / "raw")
    shutil.copytree(synthetic_raw, dst)
    return dst


def _write_video(path, frames, fps: int = 12) -> str:
    """Encodes uint8 RGB frames `[N, H, W, 3]`: VP9 for .webm, MPEG-4 part 2 otherwise
    (available in every FFmpeg build PyAV ships)."""
    from stabn_tf.data.video import write_video

    path = str(path)
    if path.endswith(".webm"):
        write_video(path, frames, fps, "libvpx-vp9")
    else:
        write_video(path, frames, fps, "mpeg4", options={"qscale": "2"})
    return path


def _moving_bar(n: int = 16, h: int = 64, w: int = 80, seed: int = 0):
    """Frames with a vertical white bar moving right on a coloured background: every frame
    differs, so sampling mistakes show."""
    import numpy as np

    rng = np.random.default_rng(seed)
    base = rng.integers(40, 120, size=3)
    frames = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        frames[t] = base
        x = int(t * (w - 8) / max(1, n - 1))
        frames[t, :, x:x + 8] = 255
    return frames


@pytest.fixture
def write_video():
    """`write_video(path, frames=None, fps=12)` → path; default frames: a moving bar."""
    def write(path, frames=None, fps: int = 12):
        return _write_video(path, _moving_bar() if frames is None else frames, fps)
    return write


@pytest.fixture
def moving_bar():
    return _moving_bar
