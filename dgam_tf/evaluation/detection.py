"""Detection mAP under the ActivityNet protocol (docs/method.md §6), in numpy.

Reproduces `Evaluation/eval_detection.py` of activitynet/ActivityNet (to
rounding) without its per-prediction pandas loop:

* Per class, predictions are ranked by `numpy.argsort(scores)[::-1]` on that
  class's predictions in file order. That is not a stable descending sort:
  of two tied predictions the later one in the file ranks first, and larger
  tie groups come in whatever order numpy's quicksort leaves them; that
  order is reproduced exactly (with the same numpy).
* At each tIoU threshold separately, a prediction is a true positive if the
  not yet matched ground truth of its class and video with the highest tIoU
  (ties among ground truths again in `argsort(tiou)[::-1]` order) reaches
  the threshold. Predictions in videos without ground truth of their class,
  including videos that are not in the ground-truth subset at all, are false
  positives (the reference counts them so too; it drops nothing).
* AP is VOC-2011 interpolated AP; mAP averages the classes of the ground
  truth, a class without predictions scoring 0.

The greedy matching is sequential only among predictions of the same class
and video that compete for the same ground truth, so `_match` resolves all
classes, videos and thresholds at once in rounds (see there).
"""
import os
import sys

import numpy as np

from dgam_tf import files
from dgam_tf.config import THUMOS14_TIOU_THRESHOLDS
from dgam_tf.errors import UserError
from dgam_tf.evaluation import activitynet_json

# Named averages of mAP over tIoU ranges, added when all thresholds of a
# range were evaluated: THUMOS14 reports the first three, ActivityNet the last.
AVERAGE_RANGES = {
    "0.1:0.5": np.linspace(0.1, 0.5, 5),
    "0.3:0.7": np.linspace(0.3, 0.7, 5),
    "0.1:0.7": np.linspace(0.1, 0.7, 7),
    "0.5:0.95": np.linspace(0.5, 0.95, 10),
}

def as_typed(value):
    """A float as a user would type it: 0.30000000000000004 -> 0.3."""
    return float(f"{value:.15g}")


def segment_tiou(first, second):
    """Temporal IoU of segment pairs, the reference's arithmetic.

    Args:
      first: float [M, 2], predictions.
      second: float [M, 2], ground truths.

    Returns:
      float [M]; NaN when both segments have zero length.
    """
    intersection = np.clip(np.minimum(first[:, 1], second[:, 1])
                           - np.maximum(first[:, 0], second[:, 0]), 0, None)
    union = ((second[:, 1] - second[:, 0]) + (first[:, 1] - first[:, 0])
             - intersection)
    with np.errstate(divide="ignore", invalid="ignore"):
        return intersection / union


def _rank_predictions(label, score, num_classes):
    """Orders predictions by class, then by `argsort(score)[::-1]` per class.

    Returns:
      (ranked, bounds): int [P] prediction indices, and int [C + 1] with
      class c at ranked[bounds[c]:bounds[c + 1]].
    """
    ranked = np.argsort(label, kind="stable")  # file order within a class
    bounds = np.searchsorted(label[ranked], np.arange(num_classes + 1))
    for c in range(num_classes):
        members = ranked[bounds[c]:bounds[c + 1]]
        ranked[bounds[c]:bounds[c + 1]] = members[np.argsort(score[members])[::-1]]
    return ranked, bounds


def _candidate_pairs(ground_truth, segments, group, min_threshold):
    """Pairs (ranked prediction, ground truth) that may match, by preference.

    Args:
      ground_truth: `activitynet_json.GroundTruth`.
      segments: float [P, 2], the ranked predictions' segments.
      group: int [P], each ranked prediction's (class, video) key
        label * V + video, or -1 for a video outside the ground truth.
      min_threshold: the lowest tIoU threshold.

    Returns:
      (pair_q, pair_g, tiou): int, int, float arrays [M] of the pairs with
      tIoU not below `min_threshold`, sorted by prediction rank q and, within
      one prediction, in the reference's order `argsort(tiou)[::-1]` over all
      ground truths of the (class, video) in file order.
    """
    num_videos = len(ground_truth.video_ids)
    gt_group = ground_truth.label * num_videos + ground_truth.video
    gt_order = np.argsort(gt_group, kind="stable")  # file order in a group
    sorted_group = gt_group[gt_order]
    first = np.searchsorted(sorted_group, group, side="left")
    counts = np.searchsorted(sorted_group, group, side="right") - first
    pair_q = np.repeat(np.arange(len(group)), counts)
    offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                                 counts)
    pair_g = gt_order[np.repeat(first, counts) + offset]
    tiou = segment_tiou(segments[pair_q], ground_truth.segments[pair_g])
    keep = ~(tiou < min_threshold)  # NaN stays, as in the reference
    pair_q, pair_g, tiou = pair_q[keep], pair_g[keep], tiou[keep]
    # argsort(tiou)[::-1] puts NaN first, then descending tIoU.
    key = np.where(np.isnan(tiou), -np.inf, -tiou)
    order = np.lexsort((key, pair_q))
    pair_q, pair_g, tiou, key = pair_q[order], pair_g[order], tiou[order], key[order]
    # Equal tIoUs of one prediction: replay the reference's argsort on the
    # full row, whose tie order is numpy's business. Rare outside tests.
    tied = (pair_q[1:] == pair_q[:-1]) & (key[1:] == key[:-1])
    for q in np.unique(pair_q[1:][tied]):
        members = gt_order[first[q]:first[q] + counts[q]]
        row = segment_tiou(np.broadcast_to(segments[q], (len(members), 2)),
                           ground_truth.segments[members])
        preference = np.empty(len(members), dtype=np.intp)
        preference[np.argsort(row)[::-1]] = np.arange(len(members))
        position = {g: preference[i] for i, g in enumerate(members)}
        lo, hi = np.searchsorted(pair_q, [q, q + 1])
        reorder = lo + np.argsort([position[g] for g in pair_g[lo:hi]])
        pair_g[lo:hi], tiou[lo:hi] = pair_g[reorder], tiou[reorder]
    return pair_q, pair_g, tiou


def _match(pair_q, pair_g, tiou, thresholds, num_predictions, num_gt):
    """Greedy matching at every threshold; returns true positives [K, P].

    Sequentially, prediction q (by rank) takes its most preferred free
    candidate. Done in rounds over all (threshold, candidate) items: every
    unresolved prediction proposes its most preferred free candidate g, and
    the proposal is final when no lower-ranked unresolved prediction still
    has g as a free candidate: then nothing before q can take g, and
    whatever they take q did not prefer. The lowest-ranked unresolved
    prediction always qualifies, so every round resolves at least one; in
    practice a handful of rounds resolve everything. A prediction left with
    no free candidate is a false positive.
    """
    num_thresholds = len(thresholds)
    k, item = np.nonzero(~(tiou[None, :] < thresholds[:, None]))  # [K, M]
    q = pair_q[item]
    kq = k * num_predictions + q  # items sorted by (k, q, preference)
    kg = k * num_gt + pair_g[item]
    true_positive = np.zeros(num_thresholds * num_predictions, dtype=bool)
    taken = np.zeros(num_thresholds * num_gt, dtype=bool)
    earliest = np.empty(num_thresholds * num_gt, dtype=np.intp)
    while kq.size:
        proposes = np.ones(kq.size, dtype=bool)
        np.not_equal(kq[1:], kq[:-1], out=proposes[1:])
        earliest[kg] = num_predictions
        np.minimum.at(earliest, kg, q)
        accepted = proposes & (earliest[kg] == q)
        true_positive[kq[accepted]] = True
        taken[kg[accepted]] = True
        free = ~(true_positive[kq] | taken[kg])
        kq, kg, q = kq[free], kg[free], q[free]
    return true_positive.reshape(num_thresholds, num_predictions)


def _average_precision(true_positive, bounds, num_positives):
    """VOC-2011 interpolated AP [K, C] from ranked true positives [K, P]."""
    ap = np.zeros((true_positive.shape[0], len(num_positives)))
    for c, npos in enumerate(num_positives):
        hits = true_positive[:, bounds[c]:bounds[c + 1]]
        if hits.shape[1] == 0:
            continue
        precision = np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # Recall grows by 1 / npos at each hit, where the envelope counts.
        ap[:, c] = np.where(hits, envelope, 0.0).sum(axis=1) / npos
    return ap


def evaluate(ground_truth, predictions, tiou_thresholds):
    """Detection AP per class and mAP at each tIoU threshold.

    Args:
      ground_truth: `activitynet_json.GroundTruth`.
      predictions: `activitynet_json.Predictions` with labels indexing
        `ground_truth.class_names`.
      tiou_thresholds: K thresholds in [0, 1].

    Returns:
      dict with fractions: "tiou_thresholds" [K] (as typed, see `as_typed`),
      "mAP" [K], "average_mAP"
      (mean over thresholds), "ap_per_class" {label: [K]},
      "num_predictions", "num_ground_truth".

    Raises:
      UserError: no thresholds, or one outside [0, 1].
    """
    thresholds = np.asarray(tiou_thresholds, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.all((thresholds >= 0) & (thresholds <= 1)):
        raise UserError(f"tIoU thresholds must be in [0, 1], got "
                        f"{list(tiou_thresholds)}")
    num_classes = len(ground_truth.class_names)
    num_predictions, num_gt = len(predictions.label), len(ground_truth.label)
    video_index = {v: i for i, v in enumerate(ground_truth.video_ids)}
    gt_video = np.array([video_index.get(v, -1) for v in predictions.video_ids],
                        dtype=np.intp)
    ranked, bounds = _rank_predictions(predictions.label, predictions.score,
                                       num_classes)
    video = gt_video[predictions.video[ranked]]
    group = np.where(video >= 0, predictions.label[ranked]
                     * len(ground_truth.video_ids) + video, -1)
    pairs = _candidate_pairs(ground_truth, predictions.segments[ranked], group,
                             thresholds.min())
    true_positive = _match(*pairs, thresholds, num_predictions, num_gt)
    ap = _average_precision(
        true_positive, bounds,
        np.bincount(ground_truth.label, minlength=num_classes))
    mean_ap = ap.mean(axis=1)
    return {
        "tiou_thresholds": [as_typed(t) for t in thresholds],
        "mAP": mean_ap.tolist(),
        "average_mAP": float(mean_ap.mean()),
        "ap_per_class": {name: ap[:, c].tolist()
                         for c, name in enumerate(ground_truth.class_names)},
        "num_predictions": num_predictions,
        "num_ground_truth": num_gt,
    }


def add_average_mAPs(metrics):
    """Returns `metrics` plus "average_mAP_<lo>:<hi>" for each covered range.

    A range of `AVERAGE_RANGES` is added when all its thresholds were
    evaluated (to 1e-9): 0.1:0.5, 0.3:0.7 and 0.1:0.7 for THUMOS14's
    0.1 ... 0.9, 0.5:0.95 for ActivityNet's 0.5:0.05:0.95.
    """
    thresholds = np.asarray(metrics["tiou_thresholds"])
    mean_ap = np.asarray(metrics["mAP"])
    averages = {}
    for name, wanted in AVERAGE_RANGES.items():
        match = np.isclose(thresholds[None, :], wanted[:, None], rtol=0,
                           atol=1e-9)  # [range, K]
        if match.any(axis=1).all():
            averages[f"average_mAP_{name}"] = float(
                mean_ap[match.any(axis=0)].mean())
    return {**metrics, **averages}


def format_table(metrics, dataset="", streams=None):
    """The metrics as a printable table in percent.

    Args:
      metrics: a dict from `evaluate` (named averages are added here).
      dataset: name shown in the title, e.g. "thumos14".
      streams: optional {stream: metrics} of each stream localized alone;
        their rows come first and the row of `metrics` is labelled "fused".

    Returns:
      multi-line string: the title, the tIoU thresholds, one row of mAP per
      threshold per stream (or one "mAP" row), then per row the named
      averages and the average over all thresholds.
    """
    rows = {**streams, "fused": metrics} if streams else {"mAP": metrics}
    title = f"Detection mAP (%) on {dataset}" if dataset else "Detection mAP (%)"
    alone = (" (" + ", ".join(f"{s} {m['num_predictions']}" for s, m in streams.items())
             + " alone)") if streams else ""
    lines = [
        f"{title}: {metrics['num_ground_truth']} ground-truth instances, "
        f"{metrics['num_predictions']} predictions{alone}",
        "tIoU " + "".join(f"{t:>7.2f}" for t in metrics["tiou_thresholds"]),
    ]
    lines += [f"{label:<5}" + "".join(f"{100 * m:>7.2f}" for m in row["mAP"])
              for label, row in rows.items()]
    for label, row in rows.items():
        row = add_average_mAPs(row)
        averages = [f"{key[len('average_mAP_'):]} {100 * value:.2f}"
                    for key, value in row.items() if key.startswith("average_mAP_")]
        averages.append(f"all thresholds {100 * row['average_mAP']:.2f}")
        lines.append(f"average mAP{f' ({label})' if streams else ''}: " + ", ".join(averages))
    return "\n".join(lines)


def coverage_warnings(ground_truth, predictions, where):
    """Lines on predictions that cover only part of the ground truth's
    videos (the others' instances all count as missed) or name videos it
    does not have (their predictions all count as false positives)."""
    gt_videos, predicted = set(ground_truth.video_ids), set(predictions.video_ids)
    lines = []
    missed = gt_videos - predicted
    if missed:
        lines.append(f"the predictions cover {len(gt_videos & predicted)} of the "
                     f"{len(gt_videos)} videos of {where}; the instances of the other "
                     f"{len(missed)} (e.g. {min(missed)!r}) count as missed")
    outside = predicted - gt_videos
    if outside:
        count = sum(predictions.video_ids[v] in outside for v in predictions.video)
        lines.append(f"{count} predictions name {len(outside)} videos that {where} does not "
                     f"have (e.g. {min(outside)!r}); they count as false positives")
    return lines


def run_eval_detections(gt_json, predictions_json, subset, tiou_thresholds,
                        output_metrics_json=None):
    """Evaluates a result file: the standalone `--mode=eval_detections`.

    Loads both files, evaluates, prints the table, and writes the metrics
    (with the named averages) to `output_metrics_json` atomically if given.

    Args:
      gt_json: ActivityNet-style ground-truth file.
      predictions_json: ActivityNet result file.
      subset: ground-truth subset to evaluate on, e.g. "test".
      tiou_thresholds: tIoU thresholds; None = THUMOS14's 0.1, ..., 0.9
        (the release's default).
      output_metrics_json: optional path of the metrics JSON.

    Returns:
      the metrics dict.

    Raises:
      UserError: missing or malformed files, unknown labels, bad thresholds.
    """
    if output_metrics_json:
        files.check_output_file(output_metrics_json)
    ground_truth = activitynet_json.load_ground_truth(gt_json, subset)
    predictions = activitynet_json.load_predictions(predictions_json, ground_truth.class_names)
    if tiou_thresholds is None:
        tiou_thresholds = THUMOS14_TIOU_THRESHOLDS
    metrics = add_average_mAPs(
        evaluate(ground_truth, predictions, tiou_thresholds))
    for line in coverage_warnings(ground_truth, predictions, f"subset {subset!r} of {gt_json}"):
        print(f"warning: {line}", file=sys.stderr)
    print(format_table(metrics, os.path.basename(gt_json)))
    if output_metrics_json:
        files.atomic_write_json(output_metrics_json, metrics)
        print(f"Wrote {output_metrics_json}")
    return metrics


def run(cfg):
    """--mode=eval_detections (numpy only: no TensorFlow is imported)."""
    ev = cfg.evaluation
    if not (ev.gt_json and ev.predictions_json):
        raise UserError("--mode=eval_detections needs --gt_json and --predictions_json")
    run_eval_detections(ev.gt_json, ev.predictions_json, ev.subset, ev.tiou_thresholds,
                        ev.output_metrics_json)
