"""Compares three encodings of per-video features in a tf.train.Example.

* float16 raw bytes (the record format's default, records.encode_video),
* float32 raw bytes (records.encode_video with feature_dtype="float32"),
* float_list (a FloatList of T * D values per stream).

For each it writes the same videos (THUMOS14-like by default: T=350, D=1024,
rgb and flow) to one TFRecord file in a temporary folder, then reads them back
through tf.data (TFRecordDataset -> parse -> [T, D] float32 tensors), one
parse at a time, and prints bytes per video and parse throughput as a
Markdown table (the figures in docs/data_format.md). "decode" parses the
same keys for every encoding without run-time checks; the last column is the
raw encodings through records.parse_video, which also checks sizes and
NaN/Inf as the input pipeline does.

    python benchmarks/record_format.py [--num_videos=50] [--num_segments=350]
        [--feature_dim=1024] [--repeats=5]
"""
import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS  # noqa: E402
from dgam_tf.data import records  # noqa: E402


def _videos(num_videos, num_segments, feature_dim):
    """ReLU-like random features, mean about 0.5 like I3D's."""
    rng = np.random.default_rng(0)
    for i in range(num_videos):
        features = {s: np.maximum(rng.normal(0.4, 0.5, (num_segments, feature_dim)), 0)
                    .astype(np.float32) for s in STREAMS}
        yield records.Video(video_id=f"video_{i:04d}", features=features, labels=[i % 20],
                            duration=num_segments * SECONDS_PER_SEGMENT,
                            gt=[(1.0, 5.0, i % 20)])


def _encode_float_list(video):
    """records.encode_video's Example with each stream as a FloatList of T * D values."""
    example = tf.train.Example.FromString(records.encode_video(video, "float32"))
    for stream, x in video.features.items():
        feature = example.features.feature[stream]
        feature.Clear()
        feature.float_list.value.extend(x.ravel().tolist())
    return example.SerializeToString(deterministic=True)


def _decode(serialized, streams, feature_dim, encoding):
    """Parses an Example of either encoding to the outputs of records.parse_video.

    Unlike parse_video it skips the run-time checks (feature size, NaN/Inf), so
    the encodings are compared on decoding alone.
    """
    spec = dict(records.EXAMPLE_SPEC)
    for stream in streams:
        spec[stream] = (tf.io.FixedLenSequenceFeature([], tf.float32, allow_missing=True)
                        if encoding == "float_list" else tf.io.FixedLenFeature([], tf.string))
    ex = tf.io.parse_single_example(serialized, spec)
    out = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v)
           for k, v in ex.items()}
    t = tf.cast(out["num_segments"], tf.int32)
    for stream in streams:
        x = out[stream]
        if encoding != "float_list":
            x = tf.cast(tf.io.decode_raw(x, tf.dtypes.as_dtype(encoding), little_endian=True),
                        tf.float32)
        out[stream] = tf.reshape(x, [t, feature_dim])
    return out


def _best_times(datasets, repeats):
    """Best wall time of a full pass over each dataset; rounds interleave the
    datasets so that load from other processes hits all of them alike."""
    best = dict.fromkeys(datasets, float("inf"))
    for _ in range(repeats + 1):  # the first round warms the file cache and tracing
        for name, ds in datasets.items():
            start = time.perf_counter()
            for _ in ds:
                pass
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_videos", type=int, default=50)
    parser.add_argument("--num_segments", type=int, default=350)
    parser.add_argument("--feature_dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    streams = list(STREAMS)
    encoders = {"float16": lambda v: records.encode_video(v, "float16"),
                "float32": lambda v: records.encode_video(v, "float32"),
                "float_list": _encode_float_list}
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: os.path.join(tmp, f"{name}.tfrecord") for name in encoders}
        for name, encode in encoders.items():
            with tf.io.TFRecordWriter(paths[name]) as writer:
                for video in _videos(args.num_videos, args.num_segments, args.feature_dim):
                    writer.write(encode(video))
        datasets = {}
        for name, path in paths.items():
            datasets[name] = tf.data.TFRecordDataset(path).map(
                lambda s, name=name: _decode(s, streams, args.feature_dim, name))
            if name != "float_list":
                datasets[name + " checked"] = tf.data.TFRecordDataset(path).map(
                    lambda s, name=name: records.parse_video(s, streams, args.feature_dim,
                                                             name))
        seconds = _best_times(datasets, args.repeats)
        sizes = {name: os.path.getsize(path) / args.num_videos for name, path in paths.items()}
    values = args.num_segments * args.feature_dim * len(streams)
    print(f"{args.num_videos} videos, T={args.num_segments}, D={args.feature_dim}, "
          f"streams {'+'.join(streams)}; best of {args.repeats} passes; one parse at a "
          "time\n")
    print("| encoding | bytes per video | bytes per value | decode: videos/s | decode: MB/s "
          "of records | records.parse_video: videos/s |")
    print("|---|---|---|---|---|---|")
    labels = {"float16": "float16 raw bytes", "float32": "float32 raw bytes",
              "float_list": "float_list"}
    for name, label in labels.items():
        rate = args.num_videos / seconds[name]
        checked = seconds.get(name + " checked")
        print(f"| {label} | {sizes[name]:,.0f} | {sizes[name] / values:.3f} | {rate:,.0f} | "
              f"{rate * sizes[name] / 1e6:,.0f} | "
              f"{f'{args.num_videos / checked:,.0f}' if checked else 'n/a'} |")


if __name__ == "__main__":
    main()
