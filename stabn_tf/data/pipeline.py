"""The tf.data input pipeline: TFRecord shards → batches ready for `model.fit`.

Per video: parse the SequenceExample → choose frame indices (segment sampling, see
`sampling`) → decode ONLY those JPEGs, and only the crop window of each
(`tf.io.decode_and_crop_jpeg`) → resize → colour jitter (training) → normalise. Files are
interleaved and shuffled in training, read in a fixed order in evaluation; everything
runs in parallel and is AUTOTUNE'd.

Distribution: the dataset starts from the list of files, with auto-shard policy FILE, so
`MultiWorkerMirroredStrategy` gives every worker whole, distinct shards (this needs at
least as many files as workers; the converter writes ≥ 8 shards per split by default).
With `strategy.distribute_datasets_from_function`, pass its `input_context` and the
per-replica batch size instead; the files are then sharded explicitly.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence

import tensorflow as tf

from stabn_tf.data import box_masks, preprocess, sampling, tfrecord
from stabn_tf.data import boxes as boxes_lib
from stabn_tf.data import labels as labels_lib
from stabn_tf.data.preprocessor import ClipPreprocessor, decode_jpeg_window

AUTOTUNE = tf.data.AUTOTUNE
PERCEPTION = "perception"
ATTENTION = "attention"


def list_files(file_pattern: str | Sequence[str]) -> list[str]:
    """Sorted, de-duplicated files matching a glob (or list of globs / paths).

    Raises FileNotFoundError naming the pattern when nothing matches, so a typo in a path
    fails at once instead of as an empty dataset later.
    """
    patterns = [file_pattern] if isinstance(file_pattern, (str, os.PathLike)) \
        else list(file_pattern)
    if not patterns:
        raise FileNotFoundError("no TFRecord file pattern given")
    files: set[str] = set()
    for pattern in patterns:
        pattern = os.fspath(pattern)
        matched = tf.io.gfile.glob(pattern)
        if not matched:
            raise FileNotFoundError(f"no TFRecord files match {pattern!r}")
        files.update(matched)
    return sorted(files)


def _first_record(files: Sequence[str]) -> bytes | None:
    for path in files:
        for record in tf.data.TFRecordDataset(path).take(1):
            return record.numpy()
    return None


def count_examples(file_pattern: str | Sequence[str]) -> int:
    """Number of videos in the matched files (e.g. for `steps_per_epoch`).

    Uses the converter's `.shards/` records next to the files when present (instant),
    otherwise counts the records.

    Raises:
      tfrecord.CorruptShardError: a shard it had to count is corrupted or truncated (one
        line naming it). The instant path reads nothing, so a same-size corruption shows
        only in `tfrecord.verify_tfrecords`, which reads every record.
    """
    total = 0
    for path in list_files(file_pattern):
        state = os.path.join(os.path.dirname(path), ".shards", os.path.basename(path) + ".json")
        try:
            with open(state, encoding="utf-8") as f:
                info = json.load(f)
            if info.get("bytes") == os.path.getsize(path):
                total += int(info["written"])
                continue
        except (OSError, ValueError, KeyError):
            pass
        total += tfrecord.count_records(path)
    return total


def _resolve_labels(labels, files: Sequence[str]) -> list[str]:
    if labels is None:
        path = os.path.join(os.path.dirname(files[0]), "labels.txt")
        if not os.path.exists(path):
            raise ValueError("flip=True needs the class names (to swap left/right classes): "
                             f"pass labels=, or put labels.txt next to the shards ({path})")
        return labels_lib.read_labels(path)
    if isinstance(labels, (str, os.PathLike)):
        return labels_lib.read_labels(labels)
    return list(labels)


def _box_targets(rec: dict, flat: tf.Tensor, window: tf.Tensor, height: tf.Tensor,
                 width: tf.Tensor, do_flip, keep: tf.Tensor, roles: tuple[str, ...],
                 mask_side: int) -> dict:
    """Supervision targets of one clip, flat over its `n·T` sampled frames.

    The boxes of the sampled frames go through the same crop window (and flip) as the
    pixels, then are rasterised at the attention map's resolution. `keep` False (not in
    the supervised subset) zeroes every weight, like a video without annotations.
    """
    n = tf.shape(rec[tfrecord.IMAGE_ENCODED])[0]
    values, box_roles, counts = tfrecord.box_values(rec, n)
    wanted = tf.reduce_any(tf.equal(box_roles[:, tf.newaxis], tf.constant(roles)), axis=1)
    values = tf.where(wanted[:, tf.newaxis], values, tf.zeros_like(values))
    chosen = tf.gather(tf.RaggedTensor.from_row_lengths(values, counts), flat)
    moved = preprocess.crop_boxes(chosen.flat_values, window, height, width)
    if do_flip is not None:
        moved = tf.cond(do_flip, lambda: preprocess.flip_boxes(moved), lambda: moved)
    dense = chosen.with_flat_values(moved).to_tensor(shape=[None, None, 4])  # [nT, K, 4]
    mask = box_masks.rasterize_boxes(dense, mask_side)

    def per_frame(values: tf.Tensor) -> tf.Tensor:  # [0 or N] → [nT], zeros if absent
        padded = tf.concat([values, tf.zeros([n - tf.size(values)], values.dtype)], 0)
        return tf.gather(padded, flat)

    annotated = tf.cast((per_frame(rec[tfrecord.BOX_ANNOTATED]) > 0) & keep, tf.float32)
    # A box file's labels (clip/active) first; else the synthetic ground truth, unless the
    # record keeps it for the metrics only.
    labelled = tf.size(rec[tfrecord.ACTIVE]) == n
    from_truth = (tf.size(rec[tfrecord.GT_ACTIVE]) == n) & tf.not_equal(
        rec[tfrecord.GT_SUPERVISION], 0)
    labels = tf.cond(labelled, lambda: rec[tfrecord.ACTIVE], lambda: rec[tfrecord.GT_ACTIVE])
    active_known = tf.cast((labelled | from_truth) & keep, tf.float32)
    return {
        "box_mask": mask * annotated[:, tf.newaxis, tf.newaxis],
        "box_frames": annotated,
        "active": tf.cast(per_frame(labels) > 0, tf.float32) * active_known,
        "active_known": active_known,
    }


def _stateless_permutation(n: tf.Tensor, key: tf.Tensor) -> tf.Tensor:
    return tf.argsort(tf.random.stateless_uniform([n], seed=key))


def _epochs(read_records, files: Sequence[str], records_per_epoch: int, shuffle_buffer: int,
            seed: int, start_epoch: int) -> tf.data.Dataset:
    """Endless (record, key) pairs in epochs of `records_per_epoch`, from `start_epoch` on.

    Epoch e is passes over the data keyed by (seed, e, pass) alone, with stateless random
    ops only (tf.data's seeded shuffles keep state from one iteration to the next, so an
    epoch could not be drawn again in another process): the files in a random order, a
    random key per file, the records shuffled within blocks of `shuffle_buffer`.
    """
    fold_in = tf.random.experimental.stateless_fold_in
    base = tf.constant([seed, 0xE90C], tf.int64)
    files = tf.constant(list(files))

    def one_pass(key: tf.Tensor) -> tf.data.Dataset:
        order = _stateless_permutation(tf.size(files), fold_in(key, 0))
        file_keys = tf.random.stateless_uniform(tf.shape(files), seed=fold_in(key, 1),
                                                minval=None, maxval=None, dtype=tf.int64)
        ds = read_records(tf.data.Dataset.from_tensor_slices(
            (tf.gather(files, order), file_keys)))
        if shuffle_buffer <= 1:
            return ds

        def shuffle_block(i, block):
            order = _stateless_permutation(tf.shape(block[0])[0], fold_in(fold_in(key, 2), i))
            return tuple(tf.gather(part, order) for part in block)

        return ds.batch(shuffle_buffer).enumerate().map(shuffle_block).unbatch()

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        key = fold_in(base, e)
        passes = tf.data.Dataset.counter().map(lambda p: fold_in(key, p))
        return passes.flat_map(one_pass).take(records_per_epoch)

    return tf.data.Dataset.counter(start_epoch).flat_map(epoch)


def make_dataset(
    file_pattern: str | Sequence[str],
    *,
    preprocessor: ClipPreprocessor,
    training: bool,
    batch_size: int,
    num_clips: int = 1,
    shuffle_buffer: int = 256,
    with_metadata: bool = False,
    with_ground_truth: bool | None = None,
    repeat: bool = False,
    flip: bool = False,
    labels: Sequence[str] | str | None = None,
    seed: int | None = None,
    color_jitter: float = 0.2,
    crop_area_range: tuple[float, float] = preprocess.CROP_AREA_RANGE,
    crop_aspect_range: tuple[float, float] = preprocess.CROP_ASPECT_RANGE,
    drop_remainder: bool | None = None,
    input_context: tf.distribute.InputContext | None = None,
    cycle_length: int = 8,
    deterministic: bool | None = None,
    with_boxes: bool = False,
    box_roles: Sequence[str] = boxes_lib.ROLES,
    supervised_fraction: float = 1.0,
    supervision_seed: int = 0,
    box_mask_size: int | None = None,
    steps_per_epoch: int = 0,
    start_epoch: int = 0,
    start_step: int = 0,
    clip_ids: Sequence[str] = (),
) -> tf.data.Dataset:
    """A dataset of `(clips, targets)` for `model.fit` / `model.evaluate`.

    clips: float32 `[B, T, S, S, 3]`, ImageNet-normalised RGB (`[B, n, T, S, S, 3]` when
    `num_clips = n > 1`). targets: `{"perception": labels, "attention": labels}` (int32
    `[B]`, the same labels for both heads); with `with_metadata`, also `"clip_id"`
    (string `[B]`), `"frame_indices"` (int32 `[B, T]` / `[B, n, T]`), `"frame_size"` (int32
    `[B, 2]`: the source frame's height and width, to place the crop in it) and, when the records
    have ground truth, `"gt_active"` (int32, same shape) and `"gt_box"` (float32, `[..., 4]`,
    normalised ymin, xmin, ymax, xmax in the *output* clip: taken at the sampled frames and
    mapped through the same crop and flip; all zeros where the object is not visible).

    Args:
      file_pattern: glob or list of globs/paths of TFRecord shards.
      preprocessor: the model's `ClipPreprocessor` (`model.preprocessor`): T and S, and in
        evaluation the whole clip preparation.
      training: random segment positions, one random-resized crop and one colour jitter
        per clip, file + record shuffling. Otherwise: centre sampling (`num_clips` evenly
        offset clips), short side 256/224·S with a centre S crop, fixed order.
      batch_size: examples per batch (per replica with `input_context`).
      num_clips: clips per video (multi-clip evaluation averages their scores). In training,
        each clip draws its own frames; all of a video's clips share one crop and jitter.
      shuffle_buffer: records held for shuffling (memory ≈ buffer × record size: an SSv2
        record at 256 px is ~0.5 MB); with `steps_per_epoch`, records are shuffled within
        consecutive blocks of this many.
      with_metadata / with_ground_truth: see above; `with_ground_truth=None` detects it
        from the first record.
      repeat: repeat forever (then give `model.fit` a `steps_per_epoch`); by default one
        pass per iteration, reshuffled every epoch.
      flip: random horizontal flips in training. Off by default: Something-Something has
        left/right classes. When on, clips of direction classes take the mirrored class
        (`labels.flip_class_map`), and classes without a mirror twin are never flipped;
        needs `labels` (names, or a labels.txt path; default: labels.txt beside the shards).
      seed: makes the training order and augmentation reproducible (and deterministic).
      color_jitter: strength s of brightness/contrast/saturation (±s) and hue (±s/4); 0 off.
      crop_area_range / crop_aspect_range: random-resized-crop ranges (area as a fraction
        of the short side squared).
      drop_remainder: default True in training (static batch shape), False in evaluation.
      input_context: from `distribute_datasets_from_function`; shards files per pipeline.
      cycle_length: files read concurrently.
      deterministic: element order guarantee; default: True unless training without seed.
      with_boxes: add attention-supervision targets (see `stabn_tf.training.supervision`):
        `"box_mask"` float32 `[B, T, h, w]` (the boxes of each sampled frame, moved with
        the pixels through crop, resize and flip, rasterised area-weighted at the
        attention map's h×w), `"box_frames"` float32 `[B, T]` (1 where the frame is
        annotated), `"active"` float32 `[B, T]` (1 where the action happens:
        a box file's `active_frames`, else the synthetic ground truth unless converted
        with `ground_truth_supervision=False`) and `"active_known"` float32 `[B]` (1 where
        the record has active labels); a
        leading `n` axis after B when `num_clips = n > 1`. Videos without boxes or labels
        give all zeros, so they add nothing to the supervision losses.
      box_roles: the roles whose boxes make the mask ("object", "hand").
      supervised_fraction: use boxes and active labels of about this fraction of the
        videos only: a fixed subset chosen by a hash of (`supervision_seed`, clip id),
        the same every epoch and in every process (`box_masks.in_supervised_subset`).
      box_mask_size: h = w of the mask; default the attention map's, ceil(S / 16).
      steps_per_epoch: training in epochs of exactly this many batches (0: off), endless:
        epoch e is a fresh pass (or several) over the data whose order and augmentation
        are drawn from (`seed`, e) alone, whatever came before. A resumed run gets the
        same batches as an uninterrupted one, starting at `start_epoch`, batch
        `start_step`: the records of the skipped batches are read (not decoded) once.
        `repeat` is implied.
      clip_ids: only the records of these clips, chosen by their id before anything is
        decoded (the others are read, never decoded).
    """
    if not isinstance(preprocessor, ClipPreprocessor):
        raise TypeError(f"`preprocessor` must be a ClipPreprocessor (`model.preprocessor`), "
                        f"got {type(preprocessor).__name__}")
    # Evaluation clips are prepared by the object the model carries; training
    # augmentation takes only T and S from it.
    num_frames, image_size = preprocessor.num_frames, preprocessor.image_size
    if batch_size < 1 or num_clips < 1:
        raise ValueError("batch_size and num_clips must be >= 1")
    if (start_epoch or start_step) and not steps_per_epoch or start_epoch < 0 or \
            not 0 <= start_step < max(steps_per_epoch, 1):
        raise ValueError(f"need steps_per_epoch > start_step >= 0 and start_epoch >= 0, got "
                         f"steps_per_epoch={steps_per_epoch}, start_epoch={start_epoch}, "
                         f"start_step={start_step}")
    if not 0.0 <= supervised_fraction <= 1.0:
        raise ValueError(f"supervised_fraction must be in [0, 1], got {supervised_fraction}")
    unknown_roles = set(box_roles) - set(boxes_lib.ROLES)
    if unknown_roles:
        raise ValueError(f"unknown box roles {sorted(unknown_roles)}; expected some of "
                         f"{boxes_lib.ROLES}")
    mask_side = box_mask_size or box_masks.mask_size(image_size)
    files = list_files(file_pattern)
    if with_metadata and with_ground_truth is None:
        first = _first_record(files)
        with_ground_truth = first is not None and tfrecord.has_ground_truth(first)
    with_ground_truth = bool(with_metadata and with_ground_truth)
    if drop_remainder is None:
        drop_remainder = training
    if deterministic is None:
        deterministic = not training or seed is not None
    flip = bool(flip and training)
    if flip:
        mapping, flippable = labels_lib.flip_class_map(_resolve_labels(labels, files))
        flip_to = tf.constant(mapping, tf.int32)
        can_flip = tf.constant(flippable, tf.bool)

    options = tf.data.Options()
    if input_context is not None:
        if len(files) < input_context.num_input_pipelines:
            raise ValueError(f"{len(files)} files cannot be sharded over "
                             f"{input_context.num_input_pipelines} input pipelines")
        files = files[input_context.input_pipeline_id::input_context.num_input_pipelines]
        policy = tf.data.experimental.AutoShardPolicy.OFF
    elif steps_per_epoch:
        # The epochs' source is a counter, not the files: sharding by element is the one
        # that still works if a strategy shards this dataset itself.
        policy = tf.data.experimental.AutoShardPolicy.DATA
    else:
        policy = tf.data.experimental.AutoShardPolicy.FILE
    options.experimental_distribute.auto_shard_policy = policy
    options.deterministic = deterministic

    def read_records(files_and_keys: tf.data.Dataset) -> tf.data.Dataset:
        """(path, key) pairs → (record, key) pairs: record i of a file gets the file's key
        folded with i. Augmentation draws are stateless ops on that per-record key, so a
        seeded pipeline is reproducible even with a parallel map."""
        def read_file(path: tf.Tensor, key: tf.Tensor) -> tf.data.Dataset:
            records = tf.data.TFRecordDataset(path, buffer_size=1 << 20).enumerate()
            return records.map(lambda i, record: (
                record, tf.random.experimental.stateless_fold_in(
                    tf.stack([key, tf.constant(0x5EED, tf.int64)]), i)))

        return files_and_keys.interleave(
            read_file,
            cycle_length=max(1, min(cycle_length, len(files))),
            block_length=1,
            num_parallel_calls=AUTOTUNE,
            deterministic=deterministic,
        )

    if steps_per_epoch:
        ds = _epochs(read_records, files, batch_size * steps_per_epoch, shuffle_buffer,
                     seed if seed is not None else random.randrange(1 << 30), start_epoch)
        ds = ds.skip(start_step * batch_size)  # records only: nothing is decoded
    else:
        ds = tf.data.Dataset.from_tensor_slices(files)
        if training:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        # Every file gets a fresh random key per pass. (The keys join the FILE list, not
        # the records: the multi-worker auto-sharder must find the files as the only
        # source of the pipeline.)
        file_keys = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        ds = read_records(tf.data.Dataset.zip((ds, file_keys)))
        if training and shuffle_buffer > 1:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()

    def process(serialized: tf.Tensor, key: tf.Tensor):
        rec = tfrecord.parse_sequence_example(serialized, with_ground_truth=with_ground_truth,
                                              with_boxes=with_boxes)
        encoded = rec[tfrecord.IMAGE_ENCODED]
        label = tf.cast(rec[tfrecord.LABEL_INDEX], tf.int32)
        s_sample, s_crop, s_color, s_flip = tf.unstack(
            tf.random.experimental.stateless_split(key, 4))
        if training:
            indices = sampling.segment_indices(
                tf.shape(encoded)[0], num_frames, training=True, num_clips=num_clips,
                seed=s_sample)  # [n, T]
        else:
            indices = preprocessor.frame_indices(tf.shape(encoded)[0], num_clips)
        flat = tf.reshape(indices, [-1])
        shape = tf.io.extract_jpeg_shape(encoded[0])
        height, width = shape[0], shape[1]
        if training:
            window = preprocess.random_crop_window(height, width, s_crop, crop_area_range,
                                                   crop_aspect_range)
        else:
            window = preprocessor.crop_window(height, width)
        frames = decode_jpeg_window(tf.gather(encoded, flat), window)
        if training:
            frames = preprocess.resize_frames(frames, image_size)  # [n*T, S, S, 3], 0..255
            clips = preprocess.color_normalize(frames, jitter=color_jitter, seed=s_color,
                                               mean=preprocessor.mean, std=preprocessor.std)
        else:
            clips = preprocessor.normalize(preprocessor.resize(frames))
        if flip:
            do_flip = (tf.random.stateless_uniform([], s_flip) < 0.5) & can_flip[label]
            clips = tf.cond(do_flip, lambda: tf.reverse(clips, axis=[2]), lambda: clips)
            label = tf.where(do_flip, flip_to[label], label)
        shape_out = [num_frames, image_size, image_size, 3]
        if num_clips > 1:
            shape_out = [num_clips, *shape_out]
        clips = tf.reshape(clips, shape_out)
        targets = {PERCEPTION: label, ATTENTION: label}
        if with_boxes:
            keep = box_masks.in_supervised_subset(rec[tfrecord.CLIP_ID], supervised_fraction,
                                                  supervision_seed)
            extra = _box_targets(rec, flat, window, height, width, do_flip if flip else None,
                                 keep, tuple(box_roles), mask_side)
            lead = [num_clips, num_frames] if num_clips > 1 else [num_frames]
            targets["box_mask"] = tf.reshape(extra["box_mask"], [*lead, mask_side, mask_side])
            targets["box_frames"] = tf.reshape(extra["box_frames"], lead)
            targets["active"] = tf.reshape(extra["active"], lead)
            targets["active_known"] = extra["active_known"]
        if with_metadata:
            out_indices = indices if num_clips > 1 else indices[0]
            targets["clip_id"] = rec[tfrecord.CLIP_ID]
            targets["frame_indices"] = out_indices
            targets["frame_size"] = tf.stack([height, width])
            if with_ground_truth:
                active = tf.gather(rec[tfrecord.GT_ACTIVE], out_indices)
                boxes = tf.gather(rec[tfrecord.GT_BOX], out_indices)
                boxes = preprocess.crop_boxes(boxes, window, height, width)
                if flip:
                    boxes = tf.cond(do_flip, lambda: preprocess.flip_boxes(boxes),
                                    lambda: boxes)
                targets["gt_active"] = tf.cast(active, tf.int32)
                targets["gt_box"] = boxes
        return clips, targets

    if clip_ids:
        wanted = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(sorted(set(clip_ids))), tf.ones([len(set(clip_ids))], tf.int32)), 0)
        ds = ds.filter(lambda serialized, key: wanted.lookup(
            tfrecord.parse_sequence_example(serialized)[tfrecord.CLIP_ID]) > 0)
    ds = ds.map(process, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.prefetch(AUTOTUNE)
    return ds.with_options(options)
