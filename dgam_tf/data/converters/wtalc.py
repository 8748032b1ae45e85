"""The W-TALC / CO2-Net / DELU release: `<Name>-I3D-JOINTFeatures.npy` (a
pickled array of per-video `[T, 2 D]` rgb+flow features) and
`<Name>-Annotations/*.npy`."""
import os

from dgam_tf import files
from dgam_tf.config import STREAMS
from dgam_tf.data.converters import common
from dgam_tf.errors import UserError

FILES = ("videoname", "subset", "classlist", "duration", "segments", "labels",
                "labels_all")


def read(source_dir, class_names, allow_pickle, stream, seconds_per_segment):
    """Reads the W-TALC layout into a common.Source."""
    features_path = common.only_file([source_dir], "*-I3D-JOINTFeatures.npy", "W-TALC feature file")
    name = os.path.basename(features_path)[:-len("-I3D-JOINTFeatures.npy")]
    annotation_dir = os.path.join(source_dir, f"{name}-Annotations")
    files.require_dir(annotation_dir)
    arrays = {key: common.load_npy(os.path.join(annotation_dir, f"{key}.npy"), allow_pickle)
              for key in FILES}
    features = common.load_npy(features_path, allow_pickle)
    if features.ndim == 0 or len(features) == 0:
        raise UserError(f"{features_path} holds no videos")
    for key, array in arrays.items():
        if key != "classlist" and (array.ndim == 0 or len(array) != len(features)):
            raise UserError(f"count mismatch: {features_path} has {len(features)} videos, "
                            f"{os.path.join(annotation_dir, key + '.npy')} has "
                            f"{len(array) if array.ndim else 'a scalar'}")
    class_names = class_names or [common.text(c) for c in arrays["classlist"]]
    class_ids = {name: c for c, name in enumerate(class_names)}
    subsets = [common.text(s) for s in arrays["subset"]]
    split_of = common.split_rule(subsets, os.path.join(annotation_dir, "subset.npy"))
    video_ids = [common.text(v) for v in arrays["videoname"]]
    labels_all_path = os.path.join(annotation_dir, "labels_all.npy")
    where = [f"{features_path} (video '{v}')" for v in video_ids]
    feature_dim = common.joint_streams(features[0], where[0])["rgb"].shape[1]
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
                     "annotations": [{"label": common.text(l), "segment": s}
                                     for s, l in zip(segments, labels)]}
            video_labels = sorted({common.class_id(common.text(l), class_ids, video_id, labels_all_path)
                                   for l in arrays["labels_all"][i]})
            joint = common.joint_streams(features[i], where[i], feature_dim)
            yield split, common.video(video_id, {name: joint[name] for name in streams},
                                video_labels, entry, class_ids, seconds_per_segment,
                                annotation_dir)

    return common.Source(class_names, streams, feature_dim, videos())
