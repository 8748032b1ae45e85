"""Converters from public feature releases to the record format.

Three source layouts (docs/data_format.md shows each with a command):

* `dgam`: the DGAM / STPN release, `{train,test}_data/{rgb,flow}_features/
  {1..N}.npy`, `{train,test}_data/{train,test}_labels.npy` (multi-hot),
  `*_vid_list.txt` and an ActivityNet-style `gt.json`.
* `wtalc`: the W-TALC / CO2-Net / DELU release, `<Name>-I3D-JOINTFeatures.npy`
  (a pickled array of per-video `[T, 2 D]` rgb+flow features) and
  `<Name>-Annotations/*.npy`.
* `npy_dir`: one `<video>.npy` per video (one stream, or rgb+flow side by
  side) and an ActivityNet/ActionFormer-style annotation JSON.

Every converter validates while it reads and writes through
records.DatasetWriter, so a mistake raises a UserError naming the file or
video and leaves no output folder behind.

Class order. A `class_names` file (one name a line) fixes the order for any
layout. Without one: `dgam` uses the ground-truth labels sorted by Python's
string order (the order of the multi-hot columns in the THUMOS14 and
ActivityNet 1.2 releases, which are alphabetical); when they name fewer
classes than the label matrices have columns, 20 or 100 columns take the
THUMOS14 or ActivityNet 1.2 order (the sorted labels of the shipped ground
truth, dgam_tf.data.annotations). `wtalc` uses `classlist.npy`, `npy_dir`
the annotation labels sorted.

Subsets to splits (`wtalc` and `npy_dir`, case-insensitive). THUMOS14
convention: `validation` -> train, `test` -> test. When any video's subset is
`training`, the ActivityNet convention applies instead: `training` -> train,
`validation` -> test, and `testing` videos (no public labels) are skipped.
"""
import collections
import os
import re

import numpy as np
import tensorflow as tf

from dgam_tf import files
from dgam_tf.config import STREAMS
from dgam_tf.data import annotations as standard_gt
from dgam_tf.data import records
from dgam_tf.errors import UserError

FORMATS = ("dgam", "wtalc", "npy_dir")
# Label columns of the DGAM releases -> the dataset whose class order they use.
RELEASE_CLASS_COUNTS = {20: "thumos14", 100: "activitynet12"}

# What a reader found: class names, streams, feature size and a lazy
# iterator of (split, Video).
_Source = collections.namedtuple("_Source", "class_names streams feature_dim videos")


def convert(source_format, source_dir, out_dir, *, annotations=None, class_names=None,
            allow_pickle=False, feature_dtype="float16", stride=16, fps=25.0,
            stream=None, num_shards=4, overwrite=False):
    """Converts a public feature release into a dataset folder.

    Args:
      source_format: "dgam", "wtalc" or "npy_dir".
      source_dir: folder of the release.
      out_dir: dataset folder to create; it appears only when complete.
      annotations: annotation JSON (`dgam`: default the only `gt*.json` in
        `test_data/` or `source_dir`; `npy_dir`: default the only `*.json` in
        `source_dir`). Unused by `wtalc`.
      class_names: optional text file, one class name a line, in label order.
      allow_pickle: allow loading pickled `.npy` files (needed by `wtalc`);
        unpickling can run code hidden in the file.
      feature_dtype: "float16" or "float32", how features are stored.
      stride: frames per feature segment.
      fps: frames per second (`npy_dir`: a video's "fps" in the JSON wins).
        A segment covers stride / fps seconds.
      stream: "rgb" or "flow" to convert that stream only, None for both.
        For `npy_dir` it also says how the files are laid out: with a stream
        each file holds that one stream `[T, D]`, without one rgb and flow
        side by side `[T, 2 D]`.
      num_shards: record files per split.
      overwrite: replace an existing `out_dir`.

    Returns:
      The DatasetInfo written to `<out_dir>/dataset.json`.

    Raises:
      UserError: a missing, malformed or inconsistent source, naming the file
        or video; no output is left behind.
    """
    if source_format not in FORMATS:
        raise UserError(f"unknown source format '{source_format}'; expected one of {FORMATS}")
    if feature_dtype not in records.FEATURE_DTYPES:
        raise UserError(f"feature_dtype must be one of {records.FEATURE_DTYPES}, "
                        f"got '{feature_dtype}'")
    if not (stride > 0 and fps > 0):
        raise UserError(f"stride and fps must be positive, got {stride} and {fps}")
    if stream is not None and stream not in STREAMS:
        raise UserError(f"stream must be one of {STREAMS}, got '{stream}'")
    # Fail before reading what may be gigabytes of features.
    if files.exists(out_dir) and not overwrite:
        raise UserError(f"{files.abspath(out_dir)} already exists; refusing to overwrite "
                        "it (pass --overwrite to replace it)")
    files.require_dir(source_dir)
    names = _read_class_names(class_names) if class_names else None
    if source_format == "dgam":
        source = _dgam(source_dir, annotations, names, stream, stride / fps)
    elif source_format == "wtalc":
        source = _wtalc(source_dir, names, allow_pickle, stream, stride / fps)
    else:
        source = _npy_dir(source_dir, annotations, names, stream, stride, fps)
    info = records.DatasetInfo(
        class_names=list(source.class_names), streams=source.streams,
        feature_dim=source.feature_dim, feature_dtype=feature_dtype,
        name=f"{source_format}: {os.path.basename(files.abspath(source_dir).rstrip('/'))}")
    with records.DatasetWriter(out_dir, info, num_shards=dict.fromkeys(("train", "test"),
                                                                      num_shards),
                               overwrite=overwrite) as writer:
        for split, video in source.videos:
            writer.add(split, video)
    return info


# --- the dgam layout --------------------------------------------------------

def _dgam(source_dir, annotations, class_names, stream, seconds_per_segment):
    """Reads the DGAM / STPN layout into a _Source."""
    streams = [stream] if stream else list(STREAMS)
    plan = []  # (split, folder, labels [N, C], names or None)
    for split in ("train", "test"):
        folder = os.path.join(source_dir, f"{split}_data")
        files.require_dir(folder)
        labels_path = os.path.join(folder, f"{split}_labels.npy")
        labels = _load_npy(labels_path)
        if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
            raise UserError(f"{labels_path}: expected a multi-hot matrix [videos, classes] "
                            f"of 0 and 1, got shape {labels.shape}")
        names = None
        lists = sorted(tf.io.gfile.glob(os.path.join(folder, "*_vid_list.txt")))
        if len(lists) > 1:
            raise UserError(f"{folder} has several video lists {lists}; keep one")
        if lists:
            names = _read_lines(lists[0])
            if len(names) != len(labels):
                raise UserError(f"count mismatch: {lists[0]} names {len(names)} videos, "
                                f"{labels_path} has {len(labels)} rows")
        elif split == "test":
            raise UserError(f"no video list (*_vid_list.txt) in {folder}: test videos "
                            "need their names to match the ground truth")
        for name in streams:
            stream_dir = os.path.join(folder, f"{name}_features")
            files.require_dir(stream_dir)
            count = sum(bool(re.fullmatch(r"\d+\.npy", f))
                        for f in tf.io.gfile.listdir(stream_dir))
            if count != len(labels):
                raise UserError(f"count mismatch: {stream_dir} has {count} feature files, "
                                f"{labels_path} has {len(labels)} rows")
        plan.append((split, folder, labels, names))
    gt_path = annotations or _only_file(
        [os.path.join(source_dir, "test_data"), source_dir], "gt*.json",
        "ground-truth JSON; pass --annotations")
    database = _read_database(gt_path)
    num_columns = {labels.shape[1] for _, _, labels, _ in plan}
    if len(num_columns) != 1:
        raise UserError(f"train and test labels have different class counts {sorted(num_columns)}")
    num_classes = num_columns.pop()
    if class_names is None:
        class_names, origin = _dgam_class_order(database, gt_path, num_classes)
    else:
        origin = "the class names file"
    if len(class_names) != num_classes:
        raise UserError(f"count mismatch: {origin} name {len(class_names)} classes, the "
                        f"label matrices have {num_classes} columns; pass --class_names")
    class_ids = {name: c for c, name in enumerate(class_names)}
    first = os.path.join(plan[0][1], f"{streams[0]}_features", "1.npy")
    feature_dim = _check_features(_load_npy(first), first).shape[1]

    def videos():
        for split, folder, labels, names in plan:
            for i, row in enumerate(labels):
                video_id = names[i] if names else f"{split}_{i + 1}"
                features = {}
                for name in streams:
                    path = os.path.join(folder, f"{name}_features", f"{i + 1}.npy")
                    features[name] = _check_features(
                        _load_npy(path), f"{path} (video '{video_id}')", feature_dim)
                entry = database.get(video_id)
                if split == "test" and entry is None:
                    raise UserError(f"test video '{video_id}' has no entry in {gt_path}")
                video = _video(video_id, features, np.flatnonzero(row).tolist(),
                               entry or {}, class_ids, seconds_per_segment, gt_path)
                for _, _, c in video.gt:
                    if c not in video.labels:
                        raise UserError(
                            f"video '{video_id}': ground truth has class '{class_names[c]}' "
                            f"but its row of {split}_labels.npy does not; is the class "
                            "order right? (see --class_names)")
                yield split, video

    return _Source(class_names, streams, feature_dim, videos())


def _dgam_class_order(database, gt_path, num_classes):
    """(class names, where they come from) for a `dgam` release without a
    class names file: the ground-truth labels sorted, or, when they are
    fewer than the label columns, the release's fixed order of THUMOS14 (20
    columns) or ActivityNet 1.2 (100) if it holds them all."""
    names = sorted({a["label"] for entry in database.values()
                    for a in entry.get("annotations", [])})
    dataset = RELEASE_CLASS_COUNTS.get(num_classes)
    if len(names) < num_classes and dataset:
        release = standard_gt.class_names(dataset)
        if set(names) <= set(release):
            return release, f"the {dataset} class order"
    return names, f"the labels of {gt_path}"


# --- the wtalc layout -------------------------------------------------------

_WTALC_FILES = ("videoname", "subset", "classlist", "duration", "segments", "labels",
                "labels_all")


def _wtalc(source_dir, class_names, allow_pickle, stream, seconds_per_segment):
    """Reads the W-TALC layout into a _Source."""
    features_path = _only_file([source_dir], "*-I3D-JOINTFeatures.npy", "W-TALC feature file")
    name = os.path.basename(features_path)[:-len("-I3D-JOINTFeatures.npy")]
    annotation_dir = os.path.join(source_dir, f"{name}-Annotations")
    files.require_dir(annotation_dir)
    arrays = {key: _load_npy(os.path.join(annotation_dir, f"{key}.npy"), allow_pickle)
              for key in _WTALC_FILES}
    features = _load_npy(features_path, allow_pickle)
    if features.ndim == 0 or len(features) == 0:
        raise UserError(f"{features_path} holds no videos")
    for key, array in arrays.items():
        if key != "classlist" and (array.ndim == 0 or len(array) != len(features)):
            raise UserError(f"count mismatch: {features_path} has {len(features)} videos, "
                            f"{os.path.join(annotation_dir, key + '.npy')} has "
                            f"{len(array) if array.ndim else 'a scalar'}")
    class_names = class_names or [_text(c) for c in arrays["classlist"]]
    class_ids = {name: c for c, name in enumerate(class_names)}
    subsets = [_text(s) for s in arrays["subset"]]
    split_of = _split_rule(subsets, os.path.join(annotation_dir, "subset.npy"))
    video_ids = [_text(v) for v in arrays["videoname"]]
    labels_all_path = os.path.join(annotation_dir, "labels_all.npy")
    where = [f"{features_path} (video '{v}')" for v in video_ids]
    feature_dim = _joint_streams(features[0], where[0])["rgb"].shape[1]
    streams = [stream] if stream else list(STREAMS)

    def videos():
        for i, subset in enumerate(subsets):
            split = split_of[subset.lower()]
            if split is None:
                continue
            video_id = video_ids[i]
            segments, labels = list(arrays["segments"][i]), list(arrays["labels"][i])
            if len(segments) != len(labels):
                raise UserError(f"video '{video_id}': {len(segments)} segments in segments.npy "
                                f"but {len(labels)} labels in labels.npy")
            entry = {"duration": arrays["duration"][i],
                     "annotations": [{"label": _text(l), "segment": s}
                                     for s, l in zip(segments, labels)]}
            video_labels = sorted({_class_id(_text(l), class_ids, video_id, labels_all_path)
                                   for l in arrays["labels_all"][i]})
            joint = _joint_streams(features[i], where[i], feature_dim)
            yield split, _video(video_id, {name: joint[name] for name in streams},
                                video_labels, entry, class_ids, seconds_per_segment,
                                annotation_dir)

    return _Source(class_names, streams, feature_dim, videos())


# --- the npy_dir layout -----------------------------------------------------

def _npy_dir(source_dir, annotations, class_names, stream, stride, fps):
    """Reads per-video .npy files and an annotation JSON into a _Source."""
    json_path = annotations or _only_file([source_dir], "*.json",
                                          "annotation JSON; pass --annotations")
    database = _read_database(json_path)
    subsets = [str(entry.get("subset", "")) for entry in database.values()]
    split_of = _split_rule(subsets, json_path)
    chosen = [(video_id, entry, split_of[subset.lower()])
              for (video_id, entry), subset in zip(database.items(), subsets)
              if split_of[subset.lower()] is not None]
    if not chosen:
        raise UserError(f"{json_path} lists no videos to convert")
    if class_names is None:
        class_names = sorted({a["label"] for _, entry, _ in chosen
                              for a in entry.get("annotations", [])})
    class_ids = {name: c for c, name in enumerate(class_names)}

    def load(video_id, feature_dim=None):
        """Stream -> [T, D] features of one video."""
        path = os.path.join(source_dir, f"{video_id}.npy")
        if not _is_file(path):
            raise UserError(f"missing feature file {path} for video '{video_id}' of {json_path}")
        where = f"{path} (video '{video_id}')"
        if stream:
            return {stream: _check_features(_load_npy(path), where, feature_dim)}
        return _joint_streams(_load_npy(path), where, feature_dim)

    feature_dim = next(iter(load(chosen[0][0]).values())).shape[1]

    def videos():
        for video_id, entry, split in chosen:
            labels = sorted({_class_id(a["label"], class_ids, video_id, json_path)
                             for a in entry.get("annotations", [])})
            try:
                seconds_per_segment = stride / float(entry.get("fps") or fps)
            except (TypeError, ValueError):
                raise UserError(f"video '{video_id}' in {json_path}: fps {entry['fps']!r} "
                                "is not a number") from None
            yield split, _video(video_id, load(video_id, feature_dim), labels, entry,
                                class_ids, seconds_per_segment, json_path)

    return _Source(class_names, [stream] if stream else list(STREAMS), feature_dim,
                   videos())


# --- shared helpers ---------------------------------------------------------

def _video(video_id, features, labels, entry, class_ids, seconds_per_segment, source):
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
        c = _class_id(annotation["label"], class_ids, video_id, source)
        gt.append((start, end, c))
    return records.Video(video_id=video_id, features=features, labels=list(labels),
                         duration=duration, seconds_per_segment=seconds_per_segment, gt=gt)


def _class_id(name, class_ids, video_id, source):
    if name not in class_ids:
        raise UserError(f"video '{video_id}' in {source}: unknown label name {name!r} "
                        f"(known: {', '.join(class_ids) or 'none'})")
    return class_ids[name]


def _split_rule(subsets, source):
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


def _check_features(x, where, feature_dim=None):
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


def _joint_streams(x, where, feature_dim=None):
    """Checks rgb+flow features side by side [T, 2 D]; returns {"rgb", "flow"} [T, D]."""
    x = _check_features(x, where, None if feature_dim is None else 2 * feature_dim)
    if x.shape[1] % 2:
        raise UserError(f"{where}: joint rgb+flow features need an even width, "
                        f"got {x.shape[1]}")
    half = x.shape[1] // 2
    return {"rgb": x[:, :half], "flow": x[:, half:]}


def _load_npy(path, allow_pickle=False):
    if not _is_file(path):
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


def _read_database(path):
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


def _read_class_names(path):
    names = _read_lines(path)
    if not names or len(set(names)) != len(names):
        raise UserError(f"{path}: expected one distinct class name a line")
    return names


def _read_lines(path):
    try:
        text = files.read_bytes(path).decode()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _only_file(folders, pattern, what):
    """The one file matching `pattern` in the first folder that has any."""
    for folder in folders:
        found = sorted(tf.io.gfile.glob(os.path.join(folder, pattern)))
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(f"several candidates for the {what} in {folder}: "
                            f"{', '.join(os.path.basename(f) for f in found)}")
    raise UserError(f"missing file: no {pattern} ({what}) in {' or '.join(folders)}")


def _is_file(path):
    return tf.io.gfile.exists(path) and not tf.io.gfile.isdir(path)


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def run(cfg):
    """--mode=convert: converts --source_dir (--source_format) into --data_dir."""
    conv, data = cfg.convert, cfg.data
    if not (conv.source_format and conv.source_dir and data.data_dir):
        raise UserError("--mode=convert needs --source_format, --source_dir and --data_dir")
    info = convert(conv.source_format, conv.source_dir, data.data_dir,
                   annotations=conv.annotations, class_names=conv.class_names,
                   allow_pickle=conv.allow_pickle, feature_dtype=conv.feature_dtype,
                   stride=conv.stride, fps=conv.fps,
                   stream=data.streams[0] if len(data.streams) == 1 else None,
                   overwrite=conv.overwrite)
    print(f"Wrote {data.data_dir}: " + records.split_summary(info))
