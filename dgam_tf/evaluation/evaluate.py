"""Evaluation of trained models on a split: inference, localization, the
detection mAP and the paper's frame-set statistics (docs/method.md §5-§7)."""
import dataclasses
import os

import numpy as np

from dgam_tf import files
from dgam_tf.evaluation import activitynet_json, detection
from dgam_tf.localization import inference, localize


def frame_statistics(samples, attention_high, cls_high):
    """The paper's frame-set statistics (§7) over sampled positions.

    Args:
      samples: iterable of (attention [n], cls_score [n] = sigmoid of the
        labelled classes' T-CAM (max over them), in_gt [n] bool).
      attention_high, cls_high: thresholds defining "high".

    Returns:
      dict of the four ratios, each a count over all videos divided by |gt|.
    """
    counts = np.zeros(5)
    for att, cls, gt in samples:
        att, cls = att > attention_high, cls > cls_high
        counts += [np.sum(att & ~gt), np.sum(gt & ~att), np.sum(cls & ~gt & ~att),
                   np.sum(att & gt & ~cls), np.sum(gt)]
    gt_total = max(counts[4], 1.0)
    return {"att_minus_gt": counts[0] / gt_total, "gt_minus_att": counts[1] / gt_total,
            "cls_minus_gt_not_att": counts[2] / gt_total,
            "att_and_gt_minus_cls": counts[3] / gt_total}


def frame_sample(video, output):
    """(attention, labelled-class score, in-gt mask) at the sampled positions."""
    n, t = output.attention.shape[0], int(video["num_segments"])
    centre = (np.arange(n) * t // n + 0.5) * float(video["seconds_per_segment"])  # [n] s
    in_gt = np.zeros(n, bool)
    for s, e in zip(video["gt_start"], video["gt_end"]):
        in_gt |= (centre >= s) & (centre <= e)
    labels = video["labels"].astype(int)
    cls = 1 / (1 + np.exp(-output.tcam[:, labels].max(-1))) if labels.size else np.zeros(n)
    return output.attention, cls, in_gt


def _score(detections_by_video, gt, class_names, thresholds):
    """detection.evaluate (plus named averages) of {video: [Detection]}.
    Classes without ground truth in the split do not enter the mAP, and
    their detections touch no other class's AP: they are left out."""
    results = localize.results_json(detections_by_video, class_names)
    scored = {"results": {v: [d for d in dets if d["label"] in gt.class_names]
                          for v, dets in results["results"].items()}}
    return detection.add_average_mAPs(detection.evaluate(
        gt, activitynet_json.parse_predictions(scored, gt.class_names), thresholds))


def evaluate_modules(modules, data_dir, info, split, data_cfg, localization_cfg, eval_cfg,
                     checkpoint=None, on_video=None):
    """Localizes a split and scores it, fused and, with two streams, each
    stream alone (one-stream localization, v = u, on the same outputs).

    Args:
      modules: {stream: (attention, classifier)}.
      data_cfg: DataConfig (test sampling, dataset name); localization_cfg:
        LocalizationConfig; eval_cfg: EvalConfig (tIoU thresholds,
        frame-set thresholds).
      checkpoint: what was evaluated, recorded in the metrics: a path, or
        {"attention": path, "classifier": path} for a module swap.
      on_video: called with each (video, outputs, detections) of
        `inference.infer_split` (the periodic validation's images), or None.

    Returns:
      metrics dict: detection.evaluate's keys plus named averages (fused),
      "streams" {stream: the same keys} with two streams,
      "frame_statistics" {stream: {...}}, "split", "source" (checkpoint,
      data, sampling and localization settings) and "results", the
      ActivityNet result JSON object of the (fused) detections.
    """
    alone = list(modules) if len(modules) > 1 else []
    database, samples = {}, {s: [] for s in modules}
    detections = {key: {} for key in [None] + alone}   # None: all streams together
    for video, outputs, dets in inference.infer_split(modules, data_dir, info, split, data_cfg,
                                                      localization_cfg):
        if on_video is not None:
            on_video(video, outputs, dets)
        vid = video["video_id"].decode()
        detections[None][vid] = dets
        for s in alone:
            detections[s][vid] = localize.localize_video(
                {s: outputs[s]}, int(video["num_segments"]), localization_cfg,
                seconds_per_segment=float(video["seconds_per_segment"]))
        database[vid] = {"subset": split, "duration": float(video["duration"]),
                         "annotations": [
                             {"label": info.class_names[c], "segment": [float(s), float(e)]}
                             for s, e, c in zip(video["gt_start"], video["gt_end"],
                                                video["gt_label"])]}
        for s, out in outputs.items():
            samples[s].append(frame_sample(video, out))
    gt = activitynet_json.parse_ground_truth({"database": database}, split,
                                      source=f"split '{split}' of {data_dir}")
    thresholds = eval_cfg.tiou_thresholds
    metrics = _score(detections[None], gt, info.class_names, thresholds)
    if alone:
        metrics["streams"] = {s: _score(detections[s], gt, info.class_names, thresholds)
                              for s in alone}
    metrics["frame_statistics"] = {
        s: frame_statistics(v, eval_cfg.attention_high, eval_cfg.cls_high)
        for s, v in samples.items()}
    metrics["split"] = split
    metrics["source"] = {
        "checkpoint": checkpoint, "data_dir": files.abspath(data_dir),
        "dataset": info.name or data_cfg.dataset, "streams": list(modules),
        "sampling": {"test_min_segments": data_cfg.test_min_segments,
                     "test_max_segments": data_cfg.test_max_segments},
        "localization": dataclasses.asdict(localization_cfg)}
    metrics["results"] = localize.results_json(detections[None], info.class_names)
    return metrics


class Evaluator:
    """Scores {stream: StreamModel} on a split: training's periodic validation
    (with summary images) and its final test evaluation.

    Args:
      data_cfg: DataConfig (test sampling, dataset name);
      localization_cfg: LocalizationConfig; eval_cfg: EvalConfig.
      draw_fn: callable(video, outputs, detections, class_names) -> image
        [1, H, W, C] (plots.video_image), or None.
    """

    def __init__(self, data_cfg, localization_cfg, eval_cfg, draw_fn=None):
        self.data_cfg = data_cfg
        self.localization_cfg = localization_cfg
        self.eval_cfg = eval_cfg
        self.draw_fn = draw_fn

    def __call__(self, models, data_dir, info, split, checkpoint=None, on_video=None):
        """evaluate_modules of the models' (attention, classifier) pairs."""
        modules = {s: (m.attention, m.classifier) for s, m in models.items()}
        return evaluate_modules(modules, data_dir, info, split, self.data_cfg,
                                self.localization_cfg, self.eval_cfg, checkpoint, on_video)

    def draw(self, video, outputs, detections, class_names):
        """The video's summary image, or None without a draw_fn."""
        if self.draw_fn is None:
            return None
        return self.draw_fn(video, outputs, detections, class_names)


def evaluate_model_dir(model_dir, data_cfg, localization_cfg, eval_cfg):
    """Evaluates the test split with the model of model_dir (or the
    module-swap folders of the EvalConfig), restored by inference.restore."""
    data_dir, info, modules, checkpoint = inference.restore(model_dir, data_cfg, eval_cfg)
    return evaluate_modules(modules, data_dir, info, data_cfg.test_split, data_cfg,
                            localization_cfg, eval_cfg, checkpoint)


def run(cfg):
    """--mode=eval: evaluate_model_dir, then `report`."""
    check_output_paths(cfg.model_dir, cfg.evaluation, cfg.data.test_split)
    report(evaluate_model_dir(cfg.model_dir, cfg.data, cfg.localization, cfg.evaluation),
           cfg.model_dir, cfg.evaluation)


def output_paths(model_dir, eval_cfg, split):
    """(metrics, detections) paths of one evaluation: EvalConfig's
    output_metrics_json (default <model_dir>/metrics.json) and, beside it,
    detections_<split>.json, or NAME_detections_<split>.json for metrics
    named NAME.json."""
    metrics_path = eval_cfg.output_metrics_json or os.path.join(model_dir, "metrics.json")
    stem = os.path.splitext(os.path.basename(metrics_path))[0]
    name = f"detections_{split}.json" if stem == "metrics" else f"{stem}_detections_{split}.json"
    return metrics_path, os.path.join(os.path.dirname(metrics_path), name)


def check_output_paths(model_dir, eval_cfg, split):
    """UserError, before the work, if `output_paths` cannot be written."""
    for path in output_paths(model_dir, eval_cfg, split):
        files.check_output_file(path)


def report(metrics, model_dir, eval_cfg):
    """Prints the mAP table (each stream alone and fused) and writes the
    metrics and the detections JSON at `output_paths`, as a pair: a failure
    leaves neither written."""
    metrics = dict(metrics)
    results = metrics.pop("results")
    split = metrics["split"]
    metrics_path, detections_path = output_paths(model_dir, eval_cfg, split)
    metrics["detections"] = files.abspath(detections_path)
    files.atomic_write_files({detections_path: files.json_bytes(results),
                              metrics_path: files.json_bytes(metrics)})
    streams = metrics["source"]["streams"]
    print(detection.format_table(
        metrics, f"{metrics['source']['dataset']}, {split} split"
        + (f", {streams[0]} stream alone" if len(streams) == 1 else ""), metrics.get("streams")))
    for stream, stats in metrics["frame_statistics"].items():
        print(f"frame sets ({stream}): " + ", ".join(f"{k} {v:.3f}" for k, v in stats.items()))
    print(f"Wrote {metrics_path} and {detections_path}")
