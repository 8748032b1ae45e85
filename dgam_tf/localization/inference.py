"""Trained models over a split: restore them for a dataset, run them video by
video and localize (docs/method.md §5). Evaluation, plots and training's
periodic validation all read the split through `infer_split`."""
import functools
import os

import tensorflow as tf

from dgam_tf import files
from dgam_tf.data import pipeline
from dgam_tf.data.resolve import resolve_data
from dgam_tf.errors import UserError
from dgam_tf.localization import localize
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.models.dgam import video_outputs


@functools.lru_cache(maxsize=8)
def output_fn(attention, classifier, num_classes):
    """Per-video outputs as one traced function for any length n (cached, so
    periodic evaluations during training reuse the trace)."""
    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def fn(x):
        return [o[0] for o in video_outputs(attention, classifier, num_classes, x[None])]
    return fn


def infer_split(modules, data_dir, info, split, data_cfg, localization_cfg):
    """Runs the models over a split, video by video.

    Args:
      modules: {stream: (attention, classifier)} (one or two streams).
      data_cfg: DataConfig (its test sampling); localization_cfg:
        LocalizationConfig.

    Yields:
      (video dict of numpy values from pipeline.eval_dataset,
       {stream: localize.StreamOutput}, [localize.Detection]).
    """
    fns = {s: output_fn(a, c, info.num_classes) for s, (a, c) in modules.items()}
    count = 0
    with pipeline.reading(data_dir, info, split):
        for count, video in enumerate(pipeline.eval_dataset(data_dir, info, split, data_cfg), 1):
            outputs = {s: localize.StreamOutput(*(t.numpy() for t in fn(video[s])))
                       for s, fn in fns.items()}
            video = {k: v.numpy() for k, v in video.items()}
            detections = localize.localize_video(
                outputs, int(video["num_segments"]), localization_cfg,
                seconds_per_segment=float(video["seconds_per_segment"]))
            yield video, outputs, detections
    if count < info.splits[split]["num_videos"]:
        raise pipeline.fewer_videos_error(data_dir, info, split)


def _trained_on(model_dir):
    """Where the model in model_dir was last evaluated (metrics.json), or None."""
    path = os.path.join(model_dir, "metrics.json")
    if not files.exists(path):
        return None
    return files.read_json(path, "metrics").get("source", {}).get("data_dir")


def _classes(names):
    """"20 classes: BaseballPitch, BasketballDunk, ..." for a message."""
    return f"{len(names)} classes: " + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")


def restore(model_dir, data_cfg, eval_cfg):
    """The data of the DataConfig (default: the built-in data) and the model
    in model_dir, or the module-swap folders of the EvalConfig
    (attention_checkpoint / classifier_checkpoint).

    Returns:
      (data_dir, DatasetInfo, {stream: (attention, classifier)}, checkpoint
      as model_dir.load_modules gives it).

    Raises:
      UserError: no such model or checkpoint, or a model trained on other
        classes than those of the data.
    """
    data_dir, info = resolve_data(data_cfg)
    modules, model_cfg, checkpoint = model_dir_lib.load_modules(
        model_dir, eval_cfg.checkpoint, data_cfg.streams,
        eval_cfg.attention_checkpoint, eval_cfg.classifier_checkpoint)
    if list(model_cfg.class_names) != info.class_names:
        folder = eval_cfg.attention_checkpoint or model_dir
        where = _trained_on(folder)
        given = ("" if data_cfg.data_dir else
                 ", the built-in synthetic data used as no --data_dir was given")
        raise UserError(f"the model in {folder} was trained on other classes "
                        f"({_classes(model_cfg.class_names)}) than those of {data_dir}{given} "
                        f"({_classes(info.class_names)}); " +
                        (f"it was evaluated on {where}: pass --data_dir={where}" if where else
                         "pass the --data_dir it was trained on"))
    return data_dir, info, modules, checkpoint
