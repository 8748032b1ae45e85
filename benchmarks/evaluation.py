"""Benchmarks of detection evaluation and localization speed.

Part 1 times `dgam_tf.evaluation.detection.evaluate` on the real THUMOS14 and
ActivityNet 1.2 ground truth (shipped in dgam_tf.data.annotations), with seeded synthetic predictions (noisy copies
of ground-truth instances, random segments, scores rounded so that ties
occur, and a few videos outside the ground truth), side by side with a
baseline that mirrors the structure of the reference ActivityNet
`Evaluation/eval_detection.py`: pandas data frames, `groupby`, and a Python
loop over `iterrows()` per class, run sequentially. It prints both times,
the speed ratio and the largest |mAP difference|. The baseline needs pandas
(`pip install pandas`; not a dependency of the package) and is skipped
without it; on ActivityNet it only runs with --activitynet_baseline.

Part 2 times `localize_video` on 210 random two-stream videos sized like
THUMOS14's test set (n = clip(T, 50, 400) sampled segments).

Usage, from the repository root:
  python benchmarks/evaluation.py [--activitynet_baseline]

The last line printed is one JSON object with the figures.
"""
import argparse
import importlib.util
import json
import time

import numpy as np

from dgam_tf import files
from dgam_tf.data import annotations
from dgam_tf.evaluation import activitynet_json, detection
from dgam_tf.localization import localize


def synthetic_results(ground_truth, num_predictions, rng):
    """An ActivityNet result object of `num_predictions` plausible detections.

    Half are noisy copies of ground-truth instances (10% with a wrong label),
    the rest random segments of random classes in ground-truth videos, plus
    1% in videos that are not in the ground truth. Scores have 3 decimals.
    """
    names = ground_truth.class_names
    num_gt = len(ground_truth.label)
    video_end = np.zeros(len(ground_truth.video_ids))
    np.maximum.at(video_end, ground_truth.video, ground_truth.segments[:, 1])
    video_end = np.maximum(video_end, 1.0) * 1.2
    copies = num_predictions // 2
    outside = num_predictions // 100
    randoms = num_predictions - copies - outside

    source = rng.integers(num_gt, size=copies)
    start, end = ground_truth.segments[source].T
    length = np.maximum(end - start, 0.1)
    start = np.maximum(0.0, start + rng.normal(0, 0.2, copies) * length)
    end = np.maximum(start + 0.1, end + rng.normal(0, 0.2, copies) * length)
    label = np.where(rng.random(copies) < 0.9, ground_truth.label[source],
                     rng.integers(len(names), size=copies))
    video = ground_truth.video[source]

    random_video = rng.integers(len(ground_truth.video_ids),
                                size=randoms + outside)
    random_start = rng.random(randoms + outside) * video_end[random_video]
    random_end = random_start + rng.exponential(0.1, randoms + outside) * (
        video_end[random_video])
    video_ids = list(ground_truth.video_ids) + [
        f"outside_{i}" for i in range(20)]
    all_video = np.concatenate([
        video, random_video[:randoms],
        len(ground_truth.video_ids) + rng.integers(20, size=outside)])
    all_label = np.concatenate([label, rng.integers(len(names),
                                                    size=randoms + outside)])
    all_start = np.concatenate([start, random_start])
    all_end = np.concatenate([end, random_end])
    score = np.round(rng.random(num_predictions), 3)

    order = rng.permutation(num_predictions)  # file order unrelated to truth
    results = {}
    for i in order:
        results.setdefault(video_ids[all_video[i]], []).append({
            "label": names[all_label[i]], "score": float(score[i]),
            "segment": [float(all_start[i]), float(all_end[i])]})
    return {"version": "benchmark", "results": results, "external_data": {}}


def baseline_mean_ap(gt_data, results, subset, thresholds):
    """mAP [K] the way the reference computes it: pandas and a per-row loop."""
    import pandas as pd  # pylint: disable=import-outside-toplevel
    activity_index, rows = {}, []
    for video_id, entry in gt_data["database"].items():
        if entry["subset"] != subset:
            continue
        for annotation in entry["annotations"]:
            activity_index.setdefault(annotation["label"], len(activity_index))
            rows.append((video_id, float(annotation["segment"][0]),
                         float(annotation["segment"][1]),
                         activity_index[annotation["label"]]))
    ground_truth = pd.DataFrame(rows, columns=["video-id", "t-start", "t-end",
                                               "label"])
    rows = [(video_id, float(r["segment"][0]), float(r["segment"][1]),
             activity_index[r["label"]], r["score"])
            for video_id, entries in results["results"].items()
            for r in entries]
    prediction = pd.DataFrame(rows, columns=["video-id", "t-start", "t-end",
                                             "label", "score"])
    ap = np.zeros((len(thresholds), len(activity_index)))
    gt_by_label = ground_truth.groupby("label")
    prediction_by_label = prediction.groupby("label")
    for cidx in activity_index.values():
        if cidx not in prediction_by_label.groups:
            continue
        ap[:, cidx] = _baseline_class_ap(
            gt_by_label.get_group(cidx).reset_index(drop=True),
            prediction_by_label.get_group(cidx).reset_index(drop=True),
            thresholds)
    return ap.mean(axis=1)


def _baseline_class_ap(ground_truth, prediction, thresholds):
    npos = float(len(ground_truth))
    lock_gt = -np.ones((len(thresholds), len(ground_truth)))
    order = prediction["score"].values.argsort()[::-1]
    prediction = prediction.loc[order].reset_index(drop=True)
    tp = np.zeros((len(thresholds), len(prediction)))
    fp = np.zeros((len(thresholds), len(prediction)))
    gt_by_video = ground_truth.groupby("video-id")
    for idx, this_pred in prediction.iterrows():
        try:
            this_gt = gt_by_video.get_group(this_pred["video-id"]).reset_index()
        except KeyError:
            fp[:, idx] = 1
            continue
        target = this_pred[["t-start", "t-end"]].values.astype(float)
        candidates = this_gt[["t-start", "t-end"]].values
        intersection = (np.minimum(target[1], candidates[:, 1])
                        - np.maximum(target[0], candidates[:, 0])).clip(0)
        union = ((candidates[:, 1] - candidates[:, 0])
                 + (target[1] - target[0]) - intersection)
        tiou = intersection / union
        tiou_order = tiou.argsort()[::-1]
        for tidx, threshold in enumerate(thresholds):
            for jdx in tiou_order:
                if tiou[jdx] < threshold:
                    fp[tidx, idx] = 1
                    break
                if lock_gt[tidx, this_gt.loc[jdx]["index"]] >= 0:
                    continue
                tp[tidx, idx] = 1
                lock_gt[tidx, this_gt.loc[jdx]["index"]] = idx
                break
            if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
                fp[tidx, idx] = 1
    tp_cumsum = np.cumsum(tp, axis=1)
    fp_cumsum = np.cumsum(fp, axis=1)
    recall = tp_cumsum / npos
    precision = tp_cumsum / (tp_cumsum + fp_cumsum)
    ap = np.zeros(len(thresholds))
    for tidx in range(len(thresholds)):
        mprec = np.hstack([[0], precision[tidx], [0]])
        mrec = np.hstack([[0], recall[tidx], [1]])
        for i in range(len(mprec) - 1)[::-1]:
            mprec[i] = max(mprec[i], mprec[i + 1])
        idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
        ap[tidx] = np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])
    return ap


def _best_time(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return min(times), value


def bench_evaluation(name, gt_path, num_predictions, thresholds, run_baseline,
                     seed):
    """Times our evaluator and, if asked and possible, the baseline."""
    gt_data = files.read_json(gt_path, "ground-truth file")
    ground_truth = activitynet_json.parse_ground_truth(gt_data, "test", gt_path)
    results = synthetic_results(ground_truth, num_predictions,
                                np.random.default_rng(seed))
    parse_s, predictions = _best_time(
        lambda: activitynet_json.parse_predictions(results, ground_truth.class_names),
        3)
    ours_s, metrics = _best_time(
        lambda: detection.evaluate(ground_truth, predictions, thresholds), 5)
    figures = {"ground_truth": len(ground_truth.label),
               "predictions": num_predictions, "parse_s": round(parse_s, 4),
               "ours_s": round(ours_s, 4),
               "average_mAP": round(metrics["average_mAP"], 6)}
    print(f"[{name}] {len(ground_truth.label)} ground truth, "
          f"{num_predictions} predictions: parse {parse_s:.3f} s, "
          f"evaluate {ours_s:.3f} s (best of 5)")
    if run_baseline:
        if importlib.util.find_spec("pandas") is None:
            print(f"[{name}] baseline skipped: pandas is not installed")
            return figures
        start = time.perf_counter()
        baseline = baseline_mean_ap(gt_data, results, "test", thresholds)
        baseline_s = time.perf_counter() - start
        difference = float(np.max(np.abs(baseline - np.array(metrics["mAP"]))))
        figures.update(baseline_s=round(baseline_s, 3),
                       speedup=round(baseline_s / ours_s, 1),
                       max_abs_map_difference=difference)
        print(f"[{name}] reference-style pandas baseline {baseline_s:.2f} s, "
              f"{baseline_s / ours_s:.0f}x slower; max |mAP difference| "
              f"{difference:.3g}")
    print(detection.format_table(metrics, name))
    return figures


def bench_localization(num_videos, seed):
    """Times `localize_video` on random THUMOS14-sized two-stream videos."""
    rng = np.random.default_rng(seed)
    # Segment counts like THUMOS14's test videos: mean ~350, max ~2700.
    num_segments = np.clip(rng.lognormal(np.log(250), 0.8, num_videos), 20,
                           2700).astype(int)
    num_segments[np.argmax(num_segments)] = 2700
    videos = []
    for segments in num_segments:
        n = int(np.clip(segments, 50, 400))
        videos.append((int(segments), {"rgb": localize.StreamOutput.random(n, 20, rng),
                                       "flow": localize.StreamOutput.random(n, 20, rng)}))
    config = localize.LocalizationConfig()

    def run():
        return [localize.localize_video(streams, segments, config)
                for segments, streams in videos]
    seconds, detections = _best_time(run, 3)
    count = sum(len(d) for d in detections)
    print(f"[localization] {num_videos} videos (T mean "
          f"{num_segments.mean():.0f}, max {num_segments.max()}): "
          f"{seconds:.3f} s, {1000 * seconds / num_videos:.2f} ms/video, "
          f"{count} detections (best of 3)")
    return {"videos": num_videos, "seconds": round(seconds, 4),
            "ms_per_video": round(1000 * seconds / num_videos, 3),
            "detections": count}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--thumos_gt", default=annotations.path("thumos14"))
    parser.add_argument("--activitynet_gt", default=annotations.path("activitynet12"))
    parser.add_argument("--thumos_predictions", type=int, default=20000)
    parser.add_argument("--activitynet_predictions", type=int, default=250000)
    parser.add_argument("--no_thumos_baseline", action="store_true",
                        help="skip the pandas baseline on THUMOS14")
    parser.add_argument("--activitynet_baseline", action="store_true",
                        help="also run the (slow) baseline on ActivityNet")
    parser.add_argument("--localization_videos", type=int, default=210)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    figures = {
        "thumos14": bench_evaluation(
            "thumos14", args.thumos_gt, args.thumos_predictions,
            detection.THUMOS14_TIOU_THRESHOLDS, not args.no_thumos_baseline,
            args.seed),
        "activitynet12": bench_evaluation(
            "activitynet12", args.activitynet_gt, args.activitynet_predictions,
            detection.ACTIVITYNET_TIOU_THRESHOLDS, args.activitynet_baseline,
            args.seed),
        "localization": bench_localization(args.localization_videos,
                                           args.seed),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
