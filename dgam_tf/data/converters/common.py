"""What the converters share: reading .npy and JSON sources, checking
features, building Videos from ActivityNet-style entries, subsets to splits."""
import collections
import os

import numpy as np
import tensorflow as tf

from dgam_tf import files
from dgam_tf.data import records
from dgam_tf.errors import UserError

# What a reader found: class names, streams, feature size and a lazy
# iterator of (split, Video).
Source = collections.namedtuple("Source", "class_names streams feature_dim videos")


def video(video_id, features, labels, entry, class_ids, seconds_per_segment, source):
    """Builds a Video from features and an ActivityNet-style database entry.

    Args:
      video_id: the video's name.
      features: stream -> float32 [T, D].
      labels: class ids of the video-level labels.
      entry: {"duration"?, "annotations": [{"label", "segment": [s, e]}]};
        without a duration the video lasts T * seconds_per_segment.
      class_ids: class name -> id.
      seconds_per_segment: time one segment covers.
      source: file the entry comes from, for error messages.
    """
    num_segments = next(iter(features.values())).shape[0]
    duration = entry.get("duration")
    try:
        duration = float(duration) if duration is not None else (
            num_segments * seconds_per_segment)
    except (TypeError, ValueError):
        raise UserError(f"video '{video_id}' in {source}: duration {duration!r} "
                        "is not a number") from None
    gt = []
    for annotation in entry.get("annotations", []):
        segment = annotation["segment"]
        try:
            start, end = (float(v) for v in segment)
        except (TypeError, ValueError):
            raise UserError(f"video '{video_id}' in {source}: segment {segment!r} is not "
                            "a pair of numbers") from None
        c = class_id(annotation["label"], class_ids, video_id, source)
        gt.append((start, end, c))
    return records.Video(video_id=video_id, features=features, labels=list(labels),
                         duration=duration, seconds_per_segment=seconds_per_segment, gt=gt)


def class_id(name, class_ids, video_id, source):
    if name not in class_ids:
        raise UserError(f"video '{video_id}' in {source}: unknown label name {name!r} "
                        f"(known: {', '.join(class_ids) or 'none'})")
    return class_ids[name]


def split_rule(subsets, source):
    """Maps lower-case subset names to "train", "test" or None (skip)."""
    present = {s.lower() for s in subsets}
    if "training" in present:
        rule = {"training": "train", "validation": "test", "testing": None}
    else:
        rule = {"validation": "train", "test": "test"}
    unknown = present - set(rule)
    if unknown:
        raise UserError(f"{source}: unknown subset(s) {sorted(unknown)}; expected "
                        f"{sorted(rule)}")
    return rule


def check_features(x, where, feature_dim=None):
    """Checks a [T, D] feature matrix and returns it as float32."""
    x = np.asarray(x)
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.floating)
                           or np.issubdtype(x.dtype, np.integer)):
        raise UserError(f"{where}: expected a numeric feature matrix [T, D], "
                        f"got shape {x.shape} of {x.dtype}")
    if x.shape[0] == 0:
        raise UserError(f"{where}: zero-length video (no feature segments)")
    if feature_dim is not None and x.shape[1] != feature_dim:
        raise UserError(f"{where}: feature size {x.shape[1]} differs from the "
                        f"{feature_dim} of the first video")
    if not np.isfinite(x).all():
        raise UserError(f"{where}: features contain NaN or Inf")
    return x.astype(np.float32)


def joint_streams(x, where, feature_dim=None):
    """Checks rgb+flow features side by side [T, 2 D]; returns {"rgb", "flow"} [T, D]."""
    x = check_features(x, where, None if feature_dim is None else 2 * feature_dim)
    if x.shape[1] % 2:
        raise UserError(f"{where}: joint rgb+flow features need an even width, "
                        f"got {x.shape[1]}")
    half = x.shape[1] // 2
    return {"rgb": x[:, :half], "flow": x[:, half:]}


def load_npy(path, allow_pickle=False):
    if not is_file(path):
        raise UserError(f"missing file: {path}")
    try:
        # encoding="bytes" reads the Python 2 pickles of the W-TALC release.
        with tf.io.gfile.GFile(path, "rb") as f:
            return np.load(f, allow_pickle=allow_pickle, encoding="bytes")
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise UserError(
                f"{path} holds pickled Python objects, and unpickling can run code hidden "
                "in the file; if you trust its source, pass --allow_pickle") from None
        raise UserError(f"cannot read {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - numpy raises many kinds on a bad file
        # (OSError, EOFError, UnpicklingError, tokenize.TokenError for a
        # garbled header, MemoryError for an absurd declared shape, ...).
        raise UserError(f"cannot read {path}: {type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}") from None


def read_database(path):
    raw = files.read_json(path, "annotation file")
    database = raw.get("database") if isinstance(raw, dict) else None
    if not isinstance(database, dict):
        raise UserError(f"{path}: expected an ActivityNet-style "
                        '{"database": {video: {...}}} object')
    for video_id, entry in database.items():
        annotations = entry.get("annotations", []) if isinstance(entry, dict) else None
        if not isinstance(annotations, list) or not all(
                isinstance(a, dict) and isinstance(a.get("label"), str) and "segment" in a
                for a in annotations):
            raise UserError(f"{path}: entry of video '{video_id}' is not "
                            '{"subset", "annotations": [{"label": str, "segment": [s, e]}]}')
    return database


def read_class_names(path):
    names = read_lines(path)
    if not names or len(set(names)) != len(names):
        raise UserError(f"{path}: expected one distinct class name a line")
    return names


def read_lines(path):
    try:
        text = files.read_bytes(path).decode()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def only_file(folders, pattern, what):
    """The one file matching `pattern` in the first folder that has any."""
    for folder in folders:
        found = sorted(tf.io.gfile.glob(os.path.join(folder, pattern)))
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(f"several candidates for the {what} in {folder}: "
                            f"{', '.join(os.path.basename(f) for f in found)}")
    raise UserError(f"missing file: no {pattern} ({what}) in {' or '.join(folders)}")


def is_file(path):
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def text(value):
    return value.decode() if isinstance(value, bytes) else str(value)
