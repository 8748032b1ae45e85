"""Ground truth and predictions in ActivityNet's result JSON, parsed into
the arrays `detection.evaluate` scores: one line naming the file and entry
for anything malformed.

Ground truth: {"database": {video: {"subset", "annotations": [{"label",
"segment": [start, end]}], ...}}}. Predictions: {"results": {video:
[{"label", "score", "segment"}]}} (docs/data_format.md).
"""
import dataclasses

import numpy as np

from dgam_tf import files
from dgam_tf.errors import UserError

# ActivityNet files say "training"/"validation"/"testing", THUMOS14
# conversions often "train"/"val"/"test"; either spelling selects the subset.
_SUBSET_ALIASES = {"train": "training", "val": "validation", "test": "testing"}


def _canonical_subset(name):
    name = str(name).lower()
    return _SUBSET_ALIASES.get(name, name)


@dataclasses.dataclass(frozen=True)
class GroundTruth:
    """The annotated action instances of one subset, G of them.

    Attributes:
      class_names: the C labels in order of first appearance in the file.
      video_ids: the V videos of the subset, with or without annotations.
      video: int [G], index into `video_ids` of each instance.
      label: int [G], index into `class_names`.
      segments: float64 [G, 2], start and end in seconds.
    """
    class_names: tuple
    video_ids: tuple
    video: np.ndarray
    label: np.ndarray
    segments: np.ndarray


@dataclasses.dataclass(frozen=True)
class Predictions:
    """Detections of a result file, P of them, in file order.

    Attributes:
      video_ids: the videos of the result file.
      video: int [P], index into `video_ids` of each prediction.
      label: int [P], index into the ground truth's `class_names`.
      score: float64 [P].
      segments: float64 [P, 2], start and end in seconds.
    """
    video_ids: tuple
    video: np.ndarray
    label: np.ndarray
    score: np.ndarray
    segments: np.ndarray


def _segment(value, where):
    """One [start, end] pair (numbers or numeric strings) as two floats."""
    try:
        if not isinstance(value, (list, tuple)) or len(value) != 2:
            raise ValueError
        start, end = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise UserError(f"{where}: segment {value!r} is not a pair of "
                        "numbers") from None
    if not (np.isfinite(start) and np.isfinite(end) and start <= end):
        raise UserError(f"{where}: segment {value!r} is not a finite "
                        "[start, end] with start <= end")
    return start, end


def parse_ground_truth(data, subset="test", source="ground truth"):
    """Reads the instances of one subset from an ActivityNet-style object.

    Args:
      data: `{"database": {video: {"subset", "annotations": [{"label",
        "segment": [start, end]}], "duration"?}}}`; segment bounds may be
        numbers or numeric strings, "duration" is not needed.
      subset: the subset to keep; "train"/"training", "val"/"validation" and
        "test"/"testing" are aliases, case is ignored.
      source: how error messages name the data, e.g. its path.

    Returns:
      `GroundTruth`.

    Raises:
      UserError: malformed data, or no annotated video in the subset.
    """
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise UserError(f"{source} has no 'database' object")
    wanted = _canonical_subset(subset)
    class_index, video_ids, subsets = {}, [], set()
    video, label, segments = [], [], []
    for video_id, entry in database.items():
        where = f"{source}, video {video_id}"
        if not isinstance(entry, dict) or "subset" not in entry:
            raise UserError(f"{where} has no 'subset'")
        subsets.add(str(entry["subset"]))
        if _canonical_subset(entry["subset"]) != wanted:
            continue
        annotations = entry.get("annotations")
        if not isinstance(annotations, list):
            raise UserError(f"{where} has no 'annotations' list")
        for annotation in annotations:
            name = annotation.get("label") if isinstance(annotation, dict) else None
            if not isinstance(name, str):
                raise UserError(f"{where}: annotation {annotation!r} has no "
                                "'label'")
            label.append(class_index.setdefault(name, len(class_index)))
            video.append(len(video_ids))
            segments.append(_segment(annotation.get("segment"), where))
        video_ids.append(video_id)
    if not label:
        raise UserError(f"{source} has no annotated video in subset "
                        f"{subset!r}; its subsets are {sorted(subsets)}")
    return GroundTruth(tuple(class_index), tuple(video_ids),
                       np.array(video, dtype=np.intp),
                       np.array(label, dtype=np.intp),
                       np.array(segments, dtype=np.float64))


def load_ground_truth(path, subset="test"):
    """`parse_ground_truth` of a JSON file; a missing or bad file is a UserError."""
    return parse_ground_truth(files.read_json(path, "ground-truth file"),
                              subset, source=path)


def _malformed_entry(entry, where, class_index):
    """The UserError for a prediction entry whose label or score is bad."""
    if not isinstance(entry, dict) or not {"label", "score",
                                           "segment"} <= entry.keys():
        return UserError(f"{where}: prediction {entry!r} needs 'label', "
                         "'score' and 'segment'")
    if not isinstance(entry["label"], str) or entry["label"] not in class_index:
        return UserError(f"{where}: label {entry['label']!r} is not a class "
                         "of the ground truth")
    return UserError(f"{where}: score {entry['score']!r} is not a number")


def _segment_array(values):
    """float64 [P, 2] from P clean [start, end] pairs, or None if any is not."""
    try:
        segments = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if (segments.shape != (len(values), 2) or not np.isfinite(segments).all()
            or np.any(segments[:, 0] > segments[:, 1])):
        return None
    return segments


def parse_predictions(data, class_names, source="predictions"):
    """Reads an ActivityNet result object.

    Args:
      data: `{"results": {video: [{"label", "score", "segment": [start,
        end]}]}, ...}`; "version" and "external_data" are not needed.
      class_names: the ground truth's class names; any other label is an
        error, as in the reference.
      source: how error messages name the data, e.g. its path.

    Returns:
      `Predictions`, possibly empty.

    Raises:
      UserError: malformed data or a label not in `class_names`; the message
        names the video.
    """
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise UserError(f"{source} has no 'results' object")
    class_index = {name: i for i, name in enumerate(class_names)}
    video_ids, counts, label, score, segment_values = [], [], [], [], []
    for video_id, entries in results.items():
        where = f"{source}, video {video_id}"
        if not isinstance(entries, list):
            raise UserError(f"{where}: expected a list of predictions")
        for entry in entries:
            try:
                label.append(class_index[entry["label"]])
                score.append(float(entry["score"]))
                segment_values.append(entry["segment"])
            except (KeyError, TypeError, ValueError):
                raise _malformed_entry(entry, where, class_index) from None
        video_ids.append(video_id)
        counts.append(len(entries))
    video = np.repeat(np.arange(len(video_ids)), counts)
    segments = _segment_array(segment_values)
    if segments is None:  # some segment is malformed: name it
        segments = np.array(
            [_segment(value, f"{source}, video {video_ids[v]}")
             for value, v in zip(segment_values, video)],
            dtype=np.float64).reshape(-1, 2)
    score = np.array(score, dtype=np.float64)
    if not np.isfinite(score).all():
        i = np.flatnonzero(~np.isfinite(score))[0]
        raise UserError(f"{source}, video {video_ids[video[i]]}: score "
                        f"{score[i]} is not finite")
    return Predictions(tuple(video_ids), video.astype(np.intp),
                       np.array(label, dtype=np.intp), score, segments)


def load_predictions(path, class_names):
    """`parse_predictions` of a JSON file; a missing or bad file is a UserError."""
    return parse_predictions(files.read_json(path, "prediction file"),
                             class_names, source=path)
