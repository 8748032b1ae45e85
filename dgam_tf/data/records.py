"""The record format: one `tf.train.Example` per video, sharded TFRecord files
and a `dataset.json` metadata file. See docs/data_format.md.

Layout of a dataset folder:

    dataset.json                      metadata (DatasetInfo)
    train-00000-of-00004.tfrecord     shards, one Example per video
    ...
    test-00000-of-00002.tfrecord
"""
import dataclasses
import functools
import math
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from dgam_tf import files
from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS
from dgam_tf.errors import UserError

FORMAT_VERSION = 1
METADATA_FILE = "dataset.json"
FEATURE_DTYPES = ("float16", "float32")


@dataclasses.dataclass
class Video:
    """One video in memory.

    Attributes:
      video_id: name of the video, e.g. "video_test_0000004".
      features: stream name -> float32 array [T, D].
      labels: sorted class ids present in the video (video-level labels).
      duration: length of the video in seconds.
      seconds_per_segment: time one feature segment covers (0.64 for I3D).
      gt: ground-truth instances (start_seconds, end_seconds, class_id); may
        be empty when unknown (e.g. training videos).
    """
    video_id: str
    features: Dict[str, np.ndarray]
    labels: List[int]
    duration: float
    seconds_per_segment: float = SECONDS_PER_SEGMENT
    gt: List[Tuple[float, float, int]] = dataclasses.field(default_factory=list)

    @property
    def num_segments(self):
        return next(iter(self.features.values())).shape[0]


def ground_truth_entry(video, subset, class_names):
    """A Video's entry in ActivityNet ground-truth JSON ("database" value):
    {"subset", "duration", "annotations": [{"label", "segment": [start, end]}]}."""
    return {"subset": subset, "duration": video.duration,
            "annotations": [{"label": class_names[c], "segment": [start, end]}
                            for start, end, c in video.gt]}


@dataclasses.dataclass
class DatasetInfo:
    """The contents of dataset.json."""
    class_names: List[str]
    streams: List[str]
    feature_dim: int
    feature_dtype: str = "float16"
    splits: Dict[str, dict] = dataclasses.field(default_factory=dict)  # name -> {"files", "num_videos"}
    name: str = ""
    format_version: int = FORMAT_VERSION
    # Features extracted by --mode=extract: their recipe and I3D weights
    # (extract.provenance); absent for converted and synthetic data.
    features: Optional[dict] = None

    def to_json(self):
        """dataset.json's object ("features" only when known)."""
        obj = dataclasses.asdict(self)
        if obj["features"] is None:
            del obj["features"]
        return obj

    @property
    def num_classes(self):
        return len(self.class_names)

    def split_files(self, data_dir, split):
        if split not in self.splits:
            raise UserError(f"{data_dir} has no '{split}' split (it has: "
                            f"{', '.join(sorted(self.splits)) or 'none'})")
        return [os.path.join(data_dir, f) for f in self.splits[split]["files"]]


def load_info(data_dir):
    """Reads and checks `<data_dir>/dataset.json`."""
    files.require_dir(data_dir, "data folder not found")
    path = os.path.join(data_dir, METADATA_FILE)
    raw = files.read_json(path, "dataset metadata")
    try:
        info = DatasetInfo(**raw)
    except TypeError as e:
        raise UserError(f"{path}: unexpected metadata layout ({e})") from None
    if info.format_version != FORMAT_VERSION:
        raise UserError(f"{path}: record format version {info.format_version}, "
                        f"this dgam-tf reads version {FORMAT_VERSION}")
    if info.feature_dtype not in FEATURE_DTYPES:
        raise UserError(f"{path}: feature_dtype must be one of {FEATURE_DTYPES}")
    unknown = set(info.streams) - set(STREAMS)
    if unknown or not info.streams:
        raise UserError(f"{path}: streams must be a non-empty subset of {STREAMS}")
    for split, entry in info.splits.items():
        for f in entry["files"]:
            if not tf.io.gfile.exists(os.path.join(data_dir, f)):
                raise UserError(f"record file of split '{split}' is missing: "
                                f"{os.path.join(data_dir, f)}")
    return info


def validate_video(video, info):
    """Checks one video against the dataset; raises UserError naming it."""
    name = f"video '{video.video_id}'"
    if set(video.features) != set(info.streams):
        raise UserError(f"{name}: has streams {sorted(video.features)}, "
                        f"expected {info.streams}")
    lengths = set()
    for stream, x in video.features.items():
        if x.ndim != 2:
            raise UserError(f"{name}: {stream} features have shape {x.shape}, "
                            f"expected [T, {info.feature_dim}]")
        if x.shape[1] != info.feature_dim:
            raise UserError(f"{name}: {stream} feature size is {x.shape[1]}, "
                            f"expected {info.feature_dim}")
        if x.shape[0] == 0:
            raise UserError(f"{name}: {stream} features are empty (zero segments)")
        if not np.all(np.isfinite(x)):
            raise UserError(f"{name}: {stream} features contain NaN or Inf")
        if info.feature_dtype == "float16" and np.abs(x).max() > 65504:
            raise UserError(f"{name}: {stream} features exceed the float16 range; "
                            "convert with --feature_dtype=float32")
        lengths.add(x.shape[0])
    if len(lengths) != 1:
        raise UserError(f"{name}: streams have different lengths {sorted(lengths)}")
    for c in video.labels:
        if not 0 <= c < info.num_classes:
            raise UserError(f"{name}: label id {c} outside 0..{info.num_classes - 1}")
    if not (video.duration > 0 and math.isfinite(video.duration)):
        raise UserError(f"{name}: duration must be positive, got {video.duration}")
    if not video.seconds_per_segment > 0:
        raise UserError(f"{name}: seconds_per_segment must be positive")
    # Durations are often derived from T and rounded; allow one segment slack.
    slack = video.seconds_per_segment
    for start, end, c in video.gt:
        if not (0 <= start < end <= video.duration + slack) or start >= video.duration:
            raise UserError(f"{name}: ground-truth segment [{start}, {end}] lies "
                            f"outside the video (0 to {video.duration:.2f} s) or is empty")
        if not 0 <= c < info.num_classes:
            raise UserError(f"{name}: ground-truth label id {c} outside "
                            f"0..{info.num_classes - 1}")


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def _ints(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def encode_video(video, feature_dtype="float16"):
    """Serializes a Video into a tf.train.Example byte string."""
    t, d = next(iter(video.features.values())).shape
    feature = {
        "video_id": _bytes([video.video_id.encode()]),
        "num_segments": _ints([t]),
        "feature_dim": _ints([d]),
        "seconds_per_segment": _floats([video.seconds_per_segment]),
        "duration": _floats([video.duration]),
        "labels": _ints(sorted(video.labels)),
        "gt_start": _floats([g[0] for g in video.gt]),
        "gt_end": _floats([g[1] for g in video.gt]),
        "gt_label": _ints([g[2] for g in video.gt]),
    }
    for stream, x in video.features.items():
        # Little-endian raw bytes: the most compact and fastest form to parse
        # (docs/data_format.md has the measurement).
        little_endian = np.dtype(feature_dtype).newbyteorder("<")
        feature[stream] = _bytes([np.ascontiguousarray(x, dtype=little_endian).tobytes()])
    # Deterministic: map entries sorted by key. Otherwise their order follows
    # the protobuf runtime's per-process hash seed and the insertion order,
    # and the same video gives different bytes from run to run.
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(
        deterministic=True)


# Parsing spec of every key but the per-stream features.
EXAMPLE_SPEC = {
    "video_id": tf.io.FixedLenFeature([], tf.string),
    "num_segments": tf.io.FixedLenFeature([], tf.int64),
    "feature_dim": tf.io.FixedLenFeature([], tf.int64),
    "seconds_per_segment": tf.io.FixedLenFeature([], tf.float32),
    "duration": tf.io.FixedLenFeature([], tf.float32),
    "labels": tf.io.VarLenFeature(tf.int64),
    "gt_start": tf.io.VarLenFeature(tf.float32),
    "gt_end": tf.io.VarLenFeature(tf.float32),
    "gt_label": tf.io.VarLenFeature(tf.int64),
}


def _assert_finite(x, message):
    """Returns x once checked to hold no NaN/Inf (InvalidArgumentError if it does).

    A vectorised is_finite + reduce_all: in the input pipeline it costs about a
    tenth of tf.debugging.check_numerics (docs/performance.md).
    """
    finite = tf.debugging.Assert(tf.reduce_all(tf.math.is_finite(x)), [message])
    with tf.control_dependencies([finite]):
        return tf.identity(x)


def parse_video(serialized, streams, feature_dim, feature_dtype="float16", select=None):
    """Parses one serialized Example into a dict of tensors (graph-safe).

    Args:
      serialized: [] string, one encoded video.
      streams: feature streams to decode.
      feature_dim: expected D.
      feature_dtype: how the records store features.
      select: optional callable num_segments -> int32 indices [n]: decode only
        those rows (segment sampling). They are gathered before the cast to
        float32 and only they are checked for NaN/Inf, so the cost does not
        grow with T (docs/performance.md).

    Returns:
      dict with "video_id" [] string, "num_segments" [] int32, "duration" []
      float32, "seconds_per_segment" [] float32, "labels" [None] int64 (class
      ids), "gt_start"/"gt_end" [None] float32, "gt_label" [None] int64 and,
      per stream, features [T, D] float32 ([n, D] with `select`).
    """
    spec = dict(EXAMPLE_SPEC)
    for stream in streams:
        spec[stream] = tf.io.FixedLenFeature([], tf.string)
    ex = tf.io.parse_single_example(serialized, spec)
    out = {k: (tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v)
           for k, v in ex.items()}
    t64 = out["num_segments"]
    checks = [tf.debugging.assert_equal(
        out["feature_dim"], tf.constant(feature_dim, tf.int64),
        message=f"record feature size differs from the expected {feature_dim}"),
        tf.debugging.assert_positive(t64, message="record has no segments"),
        tf.debugging.assert_less(t64, tf.constant(2**31, tf.int64),
                                 message="record num_segments is too large")]
    with tf.control_dependencies(checks):
        t = tf.cast(t64, tf.int32)
        rows = select(t) if select is not None else None
        for stream in streams:
            x = tf.io.decode_raw(out[stream], tf.dtypes.as_dtype(feature_dtype),
                                 little_endian=True)
            size_ok = tf.debugging.assert_equal(
                tf.size(x, out_type=tf.int64), t64 * feature_dim,
                message=f"{stream} feature bytes do not match [num_segments, {feature_dim}]")
            with tf.control_dependencies([size_ok]):
                x = tf.reshape(x, [t, feature_dim])
            if rows is not None:
                x = tf.gather(x, rows)                              # [n, D]
            out[stream] = _assert_finite(tf.cast(x, tf.float32),
                                         f"{stream} features contain NaN or Inf")
    out["num_segments"] = t
    del out["feature_dim"]
    return out


def read_videos_from_file(path, info):
    """Yields the Videos of one shard; a bad record raises UserError naming it."""
    for _, ex, problem, _ in shard_records(path, info):
        if problem:
            raise UserError(f"corrupt record in {path}, {problem}")
        yield Video(
            video_id=ex["video_id"].numpy().decode(),
            features={s: ex[s].numpy() for s in info.streams},
            labels=ex["labels"].numpy().astype(int).tolist(),
            duration=float(ex["duration"]),
            seconds_per_segment=float(ex["seconds_per_segment"]),
            gt=[(float(s), float(e), int(c)) for s, e, c in zip(
                ex["gt_start"].numpy(), ex["gt_end"].numpy(), ex["gt_label"].numpy())])


def shard_records(path, info):
    """Parses the records of one shard one by one, as the readers would.

    Yields:
      (index, video, problem, framing): `video` the dict of `parse_video`,
      or None and `problem`, plain words on what is wrong with record
      `index` (naming its video when its id can be read). `framing` is true
      for a break in the shard's framing (truncated, a length or checksum
      that does not match): nothing after it can be read, and nothing
      follows.
    """
    parse = _parser(tuple(info.streams), info.feature_dim, info.feature_dtype)
    it = iter(tf.data.TFRecordDataset(path))
    index = 0
    while True:
        try:
            serialized = next(it)
        except StopIteration:
            return
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            yield index, None, f"record {index}: {plain_reason(e)}", True
            return
        try:
            yield index, parse(serialized), None, False
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            video = _video_id(serialized)
            yield (index, None, f"record {index}" + (f" (video '{video}')" if video else "")
                   + f": {plain_reason(e)}", False)
        index += 1


@functools.lru_cache(maxsize=None)
def _parser(streams, feature_dim, feature_dtype):
    """parse_video of one serialized record, traced once per dataset layout
    (a new trace per shard would log TF's retracing warnings)."""
    return tf.function(lambda s: parse_video(s, streams, feature_dim, feature_dtype),
                       input_signature=[tf.TensorSpec([], tf.string)])


def _video_id(serialized):
    """The video_id of a serialized record, or None if it cannot be read."""
    try:
        ex = tf.io.parse_single_example(serialized, {"video_id": EXAMPLE_SPEC["video_id"]})
        return ex["video_id"].numpy().decode()
    except (tf.errors.OpError, UnicodeDecodeError):
        return None


def plain_reason(error):
    """What a TF read or parse error says about a record, in plain words."""
    line = first_line(error)
    assertion = re.search(r"assertion failed: \[([^\]]*)\]", line)
    if assertion:           # parse_video's checks: their message
        return assertion.group(1)
    truncated = re.match(r"truncated record at (\d+)", line)
    if truncated:
        return f"the file ends inside it (cut at byte {truncated.group(1)})"
    damaged = re.match(r"corrupted record at (\d+)", line)
    if damaged:
        return (f"its bytes are damaged (the checksum of the record at byte "
                f"{damaged.group(1)} does not match)")
    return line


def first_line(error):
    """The first line of a TF error's message, without the function-node
    prefix and op suffix TF adds (no op trace)."""
    msg = getattr(error, "message", str(error)).strip()
    line = msg.splitlines()[0] if msg else ""
    line = re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)
    line = re.sub(r"\s*\[Op:\w+\]( name:\s*\S*)?\s*$", "", line)
    return line or type(error).__name__


def split_summary(info):
    """"train 8 videos, test 4 videos": the splits of a DatasetInfo."""
    return ", ".join(f"{s} {v['num_videos']} videos" for s, v in info.splits.items())
