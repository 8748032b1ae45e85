"""tf.data input pipelines: training batches and per-video test inputs.

Randomness is stateless and keyed by (seed, epoch, stage), so a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would.
"""
import contextlib

import tensorflow as tf

from dgam_tf.data import records, sampling, scan
from dgam_tf.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


def _key(*parts):
    """Folds ints into one non-negative int64 seed (deterministic across runs)."""
    key = 0x9E3779B9
    for p in parts:
        key = (key * 1000003 + int(p) + 1) % (2**31 - 1)
    return key


def read_split(data_dir, info, split, shuffle_seed=None):
    """The serialized records of a split: its shard files interleaved in a
    shuffled order (with shuffle_seed) or one after another (without), less
    the records that --skip_bad_records found bad (scan.skip_bad_records)."""
    bad = info.splits[split].get("bad_records", {})
    marks = [bad.get(name, [-1, []]) for name in info.splits[split]["files"]]
    ds = tf.data.Dataset.from_tensor_slices((
        info.split_files(data_dir, split),
        tf.constant([readable for readable, _ in marks], tf.int64),     # -1: all
        tf.ragged.constant([indices for _, indices in marks], tf.int64,
                           ragged_rank=1, inner_shape=())))             # bad records
    if shuffle_seed is not None:
        ds = ds.shuffle(len(marks), seed=shuffle_seed)

    def good_records(path, readable, bad_indices):
        return tf.data.TFRecordDataset(path).take(readable).enumerate().filter(
            lambda i, _: tf.reduce_all(i != bad_indices)).map(lambda _, record: record)
    return ds.interleave(good_records, num_parallel_calls=AUTOTUNE, deterministic=True,
                         cycle_length=min(len(marks), 8) if shuffle_seed is not None else 1)


def multi_hot(labels, num_classes):
    """Class ids [L] -> multi-hot float32 [C]."""
    return tf.reduce_max(tf.one_hot(labels, num_classes, dtype=tf.float32), axis=0)


def stage_order(num_videos, config, epoch, stage, input_context=None):
    """Which videos one input pipeline feeds to a stage, in order.

    A stage draws a uniform random permutation of the split (stateless, keyed
    by seed and epoch, and by the stage unless --batch_reuse_epochs shares the
    draw between stages): draw position q holds video perm[q]. Pipeline w of
    W takes the positions q = w mod W, in per-replica batches of b; with
    reuse, the batches come in a stage's own order.

    Returns:
      (order, perm, draw_seed, noise_seed): order int64 [M * b], the draw
      positions in the order they are fed (M = the pipeline's full batches);
      perm int64 [num_videos] (videos in file order); the two int seeds.
    """
    workers, worker, b = 1, 0, config.batch_size
    if input_context is not None:
        workers, worker = input_context.num_input_pipelines, input_context.input_pipeline_id
        b = input_context.get_per_replica_batch_size(config.batch_size)
    draw_seed = _draw_seed(config, epoch, stage)
    batches = tf.range(len(range(worker, num_videos, workers)) // b, dtype=tf.int64)
    if config.batch_reuse_epochs > 1:
        # Same batches in both stages of the chunk; only their order changes.
        batches = _permutation(batches, _key(config.seed, epoch, stage))
    order = tf.reshape(batches[:, None] * b + tf.range(b, dtype=tf.int64), [-1]) * workers
    return (order + worker, _permutation(tf.range(num_videos, dtype=tf.int64), draw_seed),
            draw_seed, _key(config.seed, epoch, stage, 1))


def _draw_seed(config, epoch, stage):
    """Seed of which videos go together and their segments: per stage, or
    (the release's way) once per --batch_reuse_epochs, shared by both stages."""
    reuse = config.batch_reuse_epochs
    return _key(*((config.seed, epoch, stage) if reuse == 1 else
                  (config.seed, epoch - epoch % reuse)))


def _permutation(values, seed):
    """values [N] in a uniform random order keyed by the int `seed`."""
    keys = tf.random.stateless_uniform(tf.shape(values), seed=[seed, 0], dtype=tf.float64)
    return tf.gather(values, tf.argsort(keys, stable=True))


def segment_indices(num_segments, position, draw_seed, config):
    """The training segments of the video at draw position `position` (int or
    scalar tensor, as the seed): int32 [n]."""
    return sampling.random_perturb_indices(
        num_segments, config.num_segments,
        tf.stack([tf.cast(draw_seed, tf.int64), tf.cast(position, tf.int64)]))


def cvae_noise(position, noise_seed, config, latent_dim):
    """{stream + "_noise": standard normal [n, latent_dim]} of one draw position."""
    return {s + "_noise": tf.random.stateless_normal(
        [config.num_segments, latent_dim],
        seed=tf.stack([tf.cast(noise_seed, tf.int64) + k, tf.cast(position, tf.int64)]))
        for k, s in enumerate(config.streams)}


def train_dataset(data_dir, info, config, epoch, stage, latent_dim=None,
                  input_context=None):
    """Batches of one training stage of one epoch.

    Args:
      data_dir: dataset folder.
      info: its records.DatasetInfo.
      config: DataConfig (train_split, streams, num_segments, batch_size,
        seed, shuffle_buffer, batch_reuse_epochs).
      epoch: epoch number (0-based).
      stage: 1 (CVAE) or 2 (attention + classifier).
      latent_dim: the CVAE's latent size L, to draw its noise; None: no GAM.
      input_context: tf.distribute.InputContext; shards videos across input
        pipelines and sets the per-replica batch size.

    Returns:
      Dataset of {stream: float32 [B, n, D], "labels": float32 [B, C]} plus,
      with GAM, {stream + "_noise": standard normal [B, n, latent_dim]}: the
      CVAE's sampling noise, drawn here per example (keyed by seed, epoch,
      stage and the video's draw position) so that it does not depend on how
      a batch is split across replicas. With --shuffle_buffer=0 the batches
      are those that data.resident draws in-graph, bit for bit.
    """
    num_videos = info.splits[config.train_split]["num_videos"]
    if config.shuffle_buffer:
        ds, draw_seed, noise_seed = _locally_shuffled(data_dir, info, config, epoch, stage,
                                                      input_context)
    else:
        order, perm, draw_seed, noise_seed = stage_order(num_videos, config, epoch, stage,
                                                         input_context)
        # The split's serialized records, held while the stage draws from them.
        ds = read_split(data_dir, info, config.train_split).batch(num_videos, drop_remainder=True)
        ds = ds.flat_map(lambda split: tf.data.Dataset.from_tensor_slices(order).map(
            lambda q: (q, tf.gather(split, tf.gather(perm, q)))))

    def sample(position, serialized):
        # Only the sampled rows are decoded, cast and checked: the cost per
        # video does not grow with its length.
        video = records.parse_video(
            serialized, config.streams, info.feature_dim, info.feature_dtype,
            select=lambda t: segment_indices(t, position, draw_seed, config))
        has_labels = tf.debugging.Assert(
            tf.size(video["labels"]) > 0,
            ["training video has no labels:", video["video_id"]])
        out = {s: video[s] for s in config.streams}                # [n, D] each
        with tf.control_dependencies([has_labels]):
            out["labels"] = multi_hot(video["labels"], info.num_classes)
        if latent_dim:
            out.update(cvae_noise(position, noise_seed, config, latent_dim))
        return out

    ds = ds.map(sample, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(input_context.get_per_replica_batch_size(config.batch_size)
                  if input_context else config.batch_size, drop_remainder=True)
    if config.shuffle_buffer and config.batch_reuse_epochs > 1:
        ds = ds.shuffle(num_videos // config.batch_size + 1,
                        seed=_key(config.seed, epoch, stage))
    return ds.prefetch(AUTOTUNE)


def _locally_shuffled(data_dir, info, config, epoch, stage, input_context):
    """--shuffle_buffer=N (streaming only): (position, record) pairs of a
    local shuffle over interleaved shards, and the draw and noise seeds."""
    draw_seed = _draw_seed(config, epoch, stage)
    buffer = min(config.shuffle_buffer, info.splits[config.train_split]["num_videos"])
    ds = read_split(data_dir, info, config.train_split, draw_seed)
    ds = ds.shuffle(buffer, seed=draw_seed).enumerate()
    if input_context is not None and input_context.num_input_pipelines > 1:
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds, draw_seed, _key(config.seed, epoch, stage, 1)


def eval_dataset(data_dir, info, split, config):
    """Per-video test inputs with uniform sampling n = clip(T, min, max).

    Returns:
      Dataset of dicts: "video_id" [] string, "num_segments" [] int32 (T),
      "duration" [], "seconds_per_segment" [], "labels" [L] int64,
      "gt_start"/"gt_end" [G], "gt_label" [G], and per stream [n, D].
    """
    def sample(serialized):
        video = records.parse_video(serialized, info.streams, info.feature_dim,
                                    info.feature_dtype)
        idx = sampling.test_indices(video["num_segments"], config.test_min_segments,
                                    config.test_max_segments)
        for s in info.streams:
            video[s] = tf.gather(video[s], idx)
        return video

    ds = read_split(data_dir, info, split)
    return ds.map(sample, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE)


@contextlib.contextmanager
def reading(data_dir, info, split):
    """Turns TF read/parse errors inside the block into a UserError naming the
    file (and the video, where it can be parsed) that caused them."""
    try:
        yield
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
        raise UserError(_locate_bad_record(data_dir, info, split) or
                        f"bad record in split '{split}' of {data_dir}: "
                        f"{records.first_line(e)}") from None


def fewer_videos_error(data_dir, info, split):
    """For a split that read cleanly but ran out before the count its
    dataset.json declares (which sizes the training stages)."""
    return UserError(f"split '{split}' of {data_dir} holds fewer videos than the "
                     f"{info.splits[split]['num_videos']} its dataset.json declares (a shard "
                     "cut at a record boundary?): rewrite the dataset, or pass "
                     "--skip_bad_records to use the videos that are there")


def _locate_bad_record(data_dir, info, split):
    """Scans a split file by file to name the first bad record (error path only)."""
    for path in info.split_files(data_dir, split):
        problems = scan.scan_shard(path, info)[2]
        if problems:
            return f"corrupt record in {path}, {problems[0][1]}"
    return None
