"""A resident training split: read once into tensors, batches drawn in-graph.

The batches are those of pipeline.train_dataset with --shuffle_buffer=0, bit
for bit: the same stage order (pipeline.stage_order), segment sampling
(pipeline.segment_indices) and CVAE noise (pipeline.cvae_noise), gathered from
tensors held in host memory (device memory on GPUs) instead of parsed from
the records every stage.
"""
import numpy as np
import tensorflow as tf

from dgam_tf.data import pipeline, records
from dgam_tf.errors import UserError


def available_memory():
    """Bytes of host memory available now (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose(data_dir, info, config):
    """(hold the split in memory?, the one log line that says which and why).

    auto holds it when its trained streams' records take at most half of the
    available memory and --shuffle_buffer is 0 (a bounded local shuffle is a
    streaming feature)."""
    split = config.train_split
    size = sum(tf.io.gfile.stat(p).length for p in info.split_files(data_dir, split))
    size = size * len(config.streams) // len(info.streams)
    mode, available = config.data_residency, available_memory()
    if mode == "memory" and config.shuffle_buffer:
        raise UserError(f"--data_residency=memory draws a permutation of the whole split; "
                        f"--shuffle_buffer={config.shuffle_buffer} is a streaming-only "
                        "local shuffle (use --shuffle_buffer=0 or --data_residency=stream)")
    why = ""
    if mode == "auto":
        gb = f"{available / 1e9:.1f} GB available" if available else "available memory unknown"
        resident = not config.shuffle_buffer and available is not None and size <= available / 2
        why = (f", --shuffle_buffer={config.shuffle_buffer}" if config.shuffle_buffer else
               f", {gb}")
    else:
        resident = mode == "memory"
    how = "held in memory, batches drawn in-graph" if resident else "streamed from the records"
    return resident, (f"Training data: split '{split}' ({info.splits[split]['num_videos']} "
                      f"videos, {size / 1e9:.2f} GB of {'+'.join(config.streams)} records) "
                      f"{how} (--data_residency={mode}{why})")


def load(data_dir, info, config):
    """The split's trained streams as numpy arrays.

    Returns:
      {stream: features [sum T, D] in the records' dtype, "starts": int64 [N]
      each video's first row, "lengths": int32 [N] its T, "labels": float32
      [N, C] multi-hot}, videos in file order (pipeline.stage_order's perm).
    """
    split = config.train_split

    def parse(serialized):
        video = records.parse_video(serialized, config.streams, info.feature_dim,
                                    info.feature_dtype)
        out = {s: tf.cast(video[s], info.feature_dtype) for s in config.streams}
        out.update(video_id=video["video_id"], num_segments=video["num_segments"],
                   labels=pipeline.multi_hot(video["labels"], info.num_classes))
        return out

    videos = []
    with pipeline.reading(data_dir, info, split):
        ds = pipeline.read_split(data_dir, info, split).map(
            parse, num_parallel_calls=pipeline.AUTOTUNE, deterministic=True)
        for video in ds.as_numpy_iterator():
            if not video["labels"].any():
                raise UserError(f"training video '{video['video_id'].decode()}' of split "
                                f"'{split}' in {data_dir} has no labels")
            videos.append(video)
    if len(videos) < info.splits[split]["num_videos"]:
        raise pipeline.fewer_videos_error(data_dir, info, split)
    lengths = np.array([v["num_segments"] for v in videos], np.int32)
    data = {s: np.concatenate([v.pop(s) for v in videos]) for s in config.streams}
    data.update(starts=np.concatenate([[0], np.cumsum(lengths[:-1], dtype=np.int64)]),
                lengths=lengths, labels=np.stack([v["labels"] for v in videos]))
    return data


def draw_batch(data, positions, perm, draw_seed, noise_seed, config, latent_dim=None):
    """The batch of draw positions [b] (pipeline.stage_order), in-graph.

    Args:
      data: load()'s arrays as tensors; perm: int64 [N]; draw_seed,
        noise_seed: int64 scalars; config: DataConfig; latent_dim: the
        CVAE's L (None: no GAM, no noise).

    Returns:
      {stream: float32 [b, n, D], "labels": [b, C]} and, with GAM,
      {stream + "_noise": [b, n, L]}, as pipeline.train_dataset yields them.
    """
    videos = tf.gather(perm, positions)                              # [b]

    def per_video(args):
        position, num_segments = args
        out = {"rows": pipeline.segment_indices(num_segments, position, draw_seed, config)}
        if latent_dim:
            out.update(pipeline.cvae_noise(position, noise_seed, config, latent_dim))
        return out

    signature = {"rows": tf.TensorSpec([config.num_segments], tf.int32)}
    if latent_dim:
        signature.update({s + "_noise": tf.TensorSpec(
            [config.num_segments, latent_dim], tf.float32) for s in config.streams})
    drawn = tf.map_fn(per_video, (positions, tf.gather(data["lengths"], videos)),
                      fn_output_signature=signature, parallel_iterations=8)
    rows = tf.gather(data["starts"], videos)[:, None] + tf.cast(drawn.pop("rows"), tf.int64)
    batch = {s: tf.cast(tf.gather(data[s], rows), tf.float32) for s in config.streams}
    batch["labels"] = tf.gather(data["labels"], videos)
    batch.update(drawn)
    return batch
