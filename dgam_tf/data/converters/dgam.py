"""The DGAM / STPN release: `{train,test}_data/{rgb,flow}_features/{1..N}.npy`,
`{train,test}_data/{train,test}_labels.npy` (multi-hot), `*_vid_list.txt` and
an ActivityNet-style `gt.json`."""
import os
import re

import numpy as np
import tensorflow as tf

from dgam_tf import files
from dgam_tf.config import STREAMS
from dgam_tf.data import annotations as standard_gt
from dgam_tf.data.converters import common
from dgam_tf.errors import UserError

# Label columns of the DGAM releases -> the dataset whose class order they use.
RELEASE_CLASS_COUNTS = {20: "thumos14", 100: "activitynet12"}


def read(source_dir, annotations, class_names, stream, seconds_per_segment):
    """Reads the DGAM / STPN layout into a common.Source."""
    streams = [stream] if stream else list(STREAMS)
    plan = []  # (split, folder, labels [N, C], names or None)
    for split in ("train", "test"):
        folder = os.path.join(source_dir, f"{split}_data")
        files.require_dir(folder)
        labels_path = os.path.join(folder, f"{split}_labels.npy")
        labels = common.load_npy(labels_path)
        if labels.ndim != 2 or not np.isin(labels, (0, 1)).all():
            raise UserError(f"{labels_path}: expected a multi-hot matrix [videos, classes] "
                            f"of 0 and 1, got shape {labels.shape}")
        names = None
        lists = sorted(tf.io.gfile.glob(os.path.join(folder, "*_vid_list.txt")))
        if len(lists) > 1:
            raise UserError(f"{folder} has several video lists {lists}; keep one")
        if lists:
            names = common.read_lines(lists[0])
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
    gt_path = annotations or common.only_file(
        [os.path.join(source_dir, "test_data"), source_dir], "gt*.json",
        "ground-truth JSON; pass --annotations")
    database = common.read_database(gt_path)
    num_columns = {labels.shape[1] for _, _, labels, _ in plan}
    if len(num_columns) != 1:
        raise UserError(f"train and test labels have different class counts {sorted(num_columns)}")
    num_classes = num_columns.pop()
    if class_names is None:
        class_names, origin = _class_order(database, gt_path, num_classes)
    else:
        origin = "the class names file"
    if len(class_names) != num_classes:
        raise UserError(f"count mismatch: {origin} name {len(class_names)} classes, the "
                        f"label matrices have {num_classes} columns; pass --class_names")
    class_ids = {name: c for c, name in enumerate(class_names)}
    first = os.path.join(plan[0][1], f"{streams[0]}_features", "1.npy")
    feature_dim = common.check_features(common.load_npy(first), first).shape[1]

    def videos():
        for split, folder, labels, names in plan:
            for i, row in enumerate(labels):
                video_id = names[i] if names else f"{split}_{i + 1}"
                features = {}
                for name in streams:
                    path = os.path.join(folder, f"{name}_features", f"{i + 1}.npy")
                    features[name] = common.check_features(
                        common.load_npy(path), f"{path} (video '{video_id}')", feature_dim)
                entry = database.get(video_id)
                if split == "test" and entry is None:
                    raise UserError(f"test video '{video_id}' has no entry in {gt_path}")
                video = common.video(video_id, features, np.flatnonzero(row).tolist(),
                               entry or {}, class_ids, seconds_per_segment, gt_path)
                for _, _, c in video.gt:
                    if c not in video.labels:
                        raise UserError(
                            f"video '{video_id}': ground truth has class '{class_names[c]}' "
                            f"but its row of {split}_labels.npy does not; is the class "
                            "order right? (see --class_names)")
                yield split, video

    return common.Source(class_names, streams, feature_dim, videos())


def _class_order(database, gt_path, num_classes):
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
