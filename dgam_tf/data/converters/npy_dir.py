"""One `<video>.npy` per video (one stream, or rgb+flow side by side) and an
ActivityNet/ActionFormer-style annotation JSON."""
import os

import numpy as np

from dgam_tf.config import STREAMS
from dgam_tf.data.converters import common
from dgam_tf.errors import UserError


def read(source_dir, annotations, class_names, stream, stride, fps, stream_dim=None):
    """Reads per-video .npy files and an annotation JSON into a common.Source.

    With `stream`, a file is that stream alone [T, D], or, when `stream_dim`
    is given and a file is twice as wide, rgb and flow side by side
    [T, 2 stream_dim], of which `stream`'s half is taken."""
    json_path = annotations or common.only_file([source_dir], "*.json",
                                          "annotation JSON; pass --annotations")
    database = common.read_database(json_path)
    subsets = [str(entry.get("subset", "")) for entry in database.values()]
    split_of = common.split_rule(subsets, json_path)
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
        if not common.is_file(path):
            raise UserError(f"missing feature file {path} for video '{video_id}' of {json_path}")
        where = f"{path} (video '{video_id}')"
        x = common.load_npy(path)
        if not stream:
            return common.joint_streams(x, where, feature_dim)
        if stream_dim and np.ndim(x) == 2 and np.shape(x)[1] == 2 * stream_dim:
            return {stream: common.joint_streams(x, where, feature_dim)[stream]}
        return {stream: common.check_features(x, where, feature_dim or stream_dim)}

    feature_dim = next(iter(load(chosen[0][0]).values())).shape[1]

    def videos():
        for video_id, entry, split in chosen:
            labels = sorted({common.class_id(a["label"], class_ids, video_id, json_path)
                             for a in entry.get("annotations", [])})
            try:
                seconds_per_segment = stride / float(entry.get("fps") or fps)
            except (TypeError, ValueError):
                raise UserError(f"video '{video_id}' in {json_path}: fps {entry['fps']!r} "
                                "is not a number") from None
            yield split, common.video(video_id, load(video_id, feature_dim), labels, entry,
                                class_ids, seconds_per_segment, json_path)

    return common.Source(class_names, [stream] if stream else list(STREAMS), feature_dim,
                   videos())
