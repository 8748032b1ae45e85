"""Tests of the ActivityNet detection protocol (docs/method.md §6): hand-worked
cases, and a comparison with a plain per-prediction loop written here after
the reference `eval_detection.py`."""
import json

import numpy as np
import pytest

from dgam_tf import config
from dgam_tf.errors import UserError
from dgam_tf.evaluation import activitynet_json, detection


def _ground_truth(instances, subset="test"):
    """GroundTruth from (video, label, start, end) tuples."""
    database = {}
    for video, label, start, end in instances:
        entry = database.setdefault(video, {"subset": subset, "annotations": []})
        entry["annotations"].append({"label": label, "segment": [start, end]})
    return activitynet_json.parse_ground_truth({"database": database}, "test")


def _results(predictions):
    """Result object from (video, label, score, start, end) tuples."""
    results = {}
    for video, label, score, start, end in predictions:
        results.setdefault(video, []).append(
            {"label": label, "score": score, "segment": [start, end]})
    return {"version": "test", "results": results, "external_data": {}}


def _evaluate(instances, predictions, thresholds=(0.5,)):
    ground_truth = _ground_truth(instances)
    return detection.evaluate(
        ground_truth,
        activitynet_json.parse_predictions(_results(predictions),
                                    ground_truth.class_names),
        thresholds)


def test_ties_rank_as_numpy_argsort_reversed():
    # argsort([0.5, 0.5]) is [0, 1]; reversed, the later prediction (a
    # false positive) ranks first: precision 1/2 at the hit, AP 0.5. A
    # stable descending sort would give 1.0.
    assert list(np.argsort(np.array([0.5, 0.5]))) == [0, 1]
    metrics = _evaluate([("v", "A", 0, 10)],
                        [("v", "A", 0.5, 0, 10), ("v", "A", 0.5, 50, 60)])
    assert metrics["ap_per_class"]["A"] == pytest.approx([0.5], abs=1e-12)
    metrics = _evaluate([("v", "A", 0, 10)],
                        [("v", "A", 0.5, 50, 60), ("v", "A", 0.5, 0, 10)])
    assert metrics["ap_per_class"]["A"] == pytest.approx([1.0], abs=1e-12)


def test_several_predictions_per_instance():
    # 0.9 takes g1; 0.8 overlaps g1 (locked) and not g2: false positive;
    # 0.7 takes g2. Precision 1, 1/2, 2/3 -> envelope at hits 1 and 2/3.
    metrics = _evaluate(
        [("v", "A", 0, 10), ("v", "A", 20, 30)],
        [("v", "A", 0.9, 0, 10), ("v", "A", 0.8, 1, 10),
         ("v", "A", 0.7, 20, 29)])
    assert metrics["mAP"] == pytest.approx([(1 + 2 / 3) / 2], abs=1e-12)


def test_match_goes_to_the_highest_tiou_not_the_first_instance():
    # g1 = [0, 10], g2 = [5, 15]; [4, 14] has tIoU 6/14 with g1, 9/11 with
    # g2 and takes g2, leaving g1 for [0, 10]: AP 1. Taking g1 first would
    # leave [0, 10] with g2 at tIoU 1/3 < 0.4.
    metrics = _evaluate([("v", "A", 0, 10), ("v", "A", 5, 15)],
                        [("v", "A", 0.9, 4, 14), ("v", "A", 0.8, 0, 10)],
                        thresholds=[0.4])
    assert metrics["mAP"] == pytest.approx([1.0], abs=1e-12)


def test_other_videos_and_classes_without_predictions():
    # A in v2 (no A there) and in "v9" (not in the ground truth) are false
    # positives ranked above the hit: AP(A) = 1/3. B has no predictions: 0.
    metrics = _evaluate(
        [("v1", "A", 0, 10), ("v2", "B", 0, 10)],
        [("v9", "A", 0.95, 0, 10), ("v2", "A", 0.9, 0, 10),
         ("v1", "A", 0.8, 0, 10)])
    assert metrics["ap_per_class"]["A"] == pytest.approx([1 / 3], abs=1e-12)
    assert metrics["ap_per_class"]["B"] == [0.0]
    assert metrics["mAP"] == pytest.approx([1 / 6], abs=1e-12)
    assert metrics["num_predictions"] == 3
    assert metrics["num_ground_truth"] == 2


def test_two_thresholds():
    # tIoU: p1 [0, 7] ~ g1 0.7; p2 [20, 30] ~ g2 1.0; p3 [2, 10] ~ g1 0.8.
    # At 0.5: p1 g1, p2 g2, p3 false -> AP 1. At 0.75: p1 false, p2 g2,
    # p3 g1 -> precision 0, 1/2, 2/3 -> AP 2/3.
    metrics = _evaluate(
        [("v", "A", 0, 10), ("v", "A", 20, 30)],
        [("v", "A", 0.9, 0, 7), ("v", "A", 0.8, 20, 30),
         ("v", "A", 0.7, 2, 10)], thresholds=[0.5, 0.75])
    assert metrics["tiou_thresholds"] == [0.5, 0.75]
    assert metrics["mAP"] == pytest.approx([1.0, 2 / 3], abs=1e-12)
    assert metrics["average_mAP"] == pytest.approx(5 / 6, abs=1e-12)


def test_empty_predictions():
    ground_truth = _ground_truth([("v", "A", 0, 10), ("v", "B", 0, 10)])
    predictions = activitynet_json.parse_predictions({"results": {}},
                                              ground_truth.class_names)
    metrics = detection.evaluate(ground_truth, predictions, [0.5, 0.7])
    assert metrics["mAP"] == [0.0, 0.0]
    assert metrics["num_predictions"] == 0


def test_string_segments_and_optional_durations(tmp_path):
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps({"database": {
        # THUMOS14 style: string bounds, no duration; "testing" = "test".
        "a": {"subset": "test", "annotations": [
            {"label": "A", "segment": ["1.5", "4.5"]}]},
        "b": {"subset": "testing", "duration": 30.0, "annotations": [
            {"label": "B", "segment": [2, 6]}]},
        "c": {"subset": "validation", "annotations": [
            {"label": "C", "segment": [0, 1]}]}}}))
    ground_truth = activitynet_json.load_ground_truth(str(gt_path), "test")
    assert ground_truth.class_names == ("A", "B")
    assert ground_truth.video_ids == ("a", "b")
    np.testing.assert_array_equal(ground_truth.segments, [[1.5, 4.5], [2, 6]])
    predictions = activitynet_json.parse_predictions(_results(
        [("a", "A", 0.9, "1.5", "4.5"), ("b", "B", 0.8, 2, 6)]),
        ground_truth.class_names)
    metrics = detection.evaluate(ground_truth, predictions, [0.9])
    assert metrics["mAP"] == [1.0]


def test_unknown_label_is_a_user_error():
    ground_truth = _ground_truth([("v", "A", 0, 10)])
    with pytest.raises(UserError, match=r"video v7: label 'Dancing'"):
        activitynet_json.parse_predictions(
            _results([("v", "A", 0.5, 0, 1), ("v7", "Dancing", 0.5, 0, 1)]),
            ground_truth.class_names)


@pytest.mark.parametrize("results,message", [
    ({"v": [{"label": "A", "score": 1}]}, "video v: prediction .* needs"),
    ({"v": [{"label": "A", "score": "x", "segment": [0, 1]}]},
     "video v: score 'x'"),
    ({"v": [{"label": "A", "score": 1, "segment": [0, 1]}],
      "w": [{"label": "A", "score": 1, "segment": [5, 1]}]},
     r"video w: segment \[5, 1\]"),
    ({"v": [{"label": "A", "score": 1, "segment": ["0"]}]},
     r"video v: segment \['0'\] is not a pair"),
])
def test_malformed_predictions_name_the_video(results, message):
    with pytest.raises(UserError, match=message):
        activitynet_json.parse_predictions({"results": results}, ("A",))


def test_missing_files_and_empty_subsets(tmp_path):
    with pytest.raises(UserError, match="not found"):
        activitynet_json.load_ground_truth(str(tmp_path / "none.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        activitynet_json.load_predictions(str(bad), ("A",))
    with pytest.raises(UserError, match=r"subset 'val'.*\['test'\]"):
        activitynet_json.parse_ground_truth(
            {"database": {"v": {"subset": "test", "annotations": [
                {"label": "A", "segment": [0, 1]}]}}}, "val")
    with pytest.raises(UserError, match="no 'results'"):
        activitynet_json.parse_predictions({"version": 1}, ("A",))


def test_named_averages_and_table():
    metrics = {"tiou_thresholds": list(config.THUMOS14_TIOU_THRESHOLDS),
               "mAP": [0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01],
               "average_mAP": 0.0, "num_predictions": 1,
               "num_ground_truth": 2}
    averages = detection.add_average_mAPs(metrics)
    assert averages["average_mAP_0.1:0.5"] == pytest.approx(0.4)
    assert averages["average_mAP_0.3:0.7"] == pytest.approx(0.21)
    assert averages["average_mAP_0.1:0.7"] == pytest.approx(2.15 / 7)
    assert "average_mAP_0.5:0.95" not in averages
    table = detection.format_table(metrics, "thumos14")
    assert "0.1:0.5 40.00" in table and "0.3:0.7 21.00" in table
    assert "\nmAP    60.00  50.00" in table
    rgb = dict(metrics, mAP=[0.1] * 9, average_mAP=0.1, num_predictions=5)
    lines = detection.format_table(metrics, "x", {"rgb": rgb}).splitlines()
    assert lines[0].endswith("2 ground-truth instances, 1 predictions (rgb 5 alone)")
    assert [line.split()[0] for line in lines[1:]] == ["tIoU", "rgb", "fused", "average",
                                                      "average"]
    assert lines[2].split()[1:] == ["10.00"] * 9 and lines[3].split()[1:3] == ["60.00", "50.00"]
    assert lines[4].startswith("average mAP (rgb): 0.1:0.5 10.00, 0.3:0.7 10.00")
    assert lines[5].startswith("average mAP (fused): 0.1:0.5 40.00")
    anet = detection.add_average_mAPs(
        {"tiou_thresholds": list(config.ACTIVITYNET_TIOU_THRESHOLDS),
         "mAP": list(np.arange(10) / 10)})
    assert anet["average_mAP_0.5:0.95"] == pytest.approx(0.45)
    assert "average_mAP_0.1:0.5" not in anet


def test_run_eval_detections_writes_metrics(tmp_path, capsys):
    gt_path, predictions_path = tmp_path / "gt.json", tmp_path / "pred.json"
    gt_path.write_text(json.dumps({"database": {"v": {
        "subset": "test", "annotations": [{"label": "A",
                                           "segment": [0, 10]}]}}}))
    predictions_path.write_text(json.dumps(_results(
        [("v", "A", 0.9, 0, 10), ("other", "A", 0.5, 0, 10)])))
    output = tmp_path / "out" / "metrics.json"
    metrics = detection.run_eval_detections(
        str(gt_path), str(predictions_path), "test", None, str(output))
    assert json.loads(output.read_text()) == metrics
    # THUMOS14's linspace thresholds, written as a user types them (exact
    # floats: linspace's third is 0.30000000000000004).
    assert metrics["tiou_thresholds"] == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert metrics["mAP"] == [1.0] * 9
    assert metrics["average_mAP_0.1:0.5"] == 1.0
    printed = capsys.readouterr()
    assert printed.err == (f"warning: 1 predictions name 1 videos that subset 'test' of {gt_path} "
                           "does not have (e.g. 'other'); they count as false positives\n")
    assert printed.out.splitlines()[-1] == f"Wrote {output}"
    assert "0.1:0.5 100.00" in printed.out


def _reference_ap(instances, results, class_names, thresholds):
    """AP [C, K] with one Python loop per prediction, after the reference."""
    predictions = [(video, r["label"], r["score"], *r["segment"])
                   for video, entries in results["results"].items()
                   for r in entries]  # file order
    ap = np.zeros((len(class_names), len(thresholds)))
    for c, name in enumerate(class_names):
        gts = [g for g in instances if g[1] == name]
        preds = [p for p in predictions if p[1] == name]
        if not preds:
            continue
        order = np.argsort(np.array([p[2] for p in preds]))[::-1]
        locked = np.zeros((len(thresholds), len(gts)), dtype=bool)
        tp = np.zeros((len(thresholds), len(preds)))
        for rank, i in enumerate(order):
            video, _, _, start, end = preds[i]
            same = [j for j, g in enumerate(gts) if g[0] == video]
            if not same:
                continue
            segments = np.array([gts[j][2:] for j in same], dtype=float)
            intersection = (np.minimum(end, segments[:, 1])
                            - np.maximum(start, segments[:, 0])).clip(0)
            union = (segments[:, 1] - segments[:, 0] + (end - start)
                     - intersection)
            with np.errstate(divide="ignore", invalid="ignore"):
                tiou = intersection / union
            for k, threshold in enumerate(thresholds):
                for j in np.argsort(tiou)[::-1]:
                    if tiou[j] < threshold:
                        break
                    if not locked[k, same[j]]:
                        locked[k, same[j]] = True
                        tp[k, rank] = 1
                        break
        for k in range(len(thresholds)):
            hits = np.cumsum(tp[k])
            precision = np.concatenate(
                [[0], hits / np.arange(1, len(preds) + 1), [0]])
            recall = np.concatenate([[0], hits / len(gts), [1]])
            for i in range(len(precision) - 2, -1, -1):
                precision[i] = max(precision[i], precision[i + 1])
            steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
            ap[c, k] = np.sum((recall[steps] - recall[steps - 1])
                              * precision[steps])
    return ap


@pytest.mark.parametrize("seed", range(6))
def test_matches_a_per_prediction_loop_on_random_data(seed):
    # Integer bounds and rounded scores make tIoU and score ties common;
    # zero-length segments give NaN tIoUs; "w*" videos have no ground truth;
    # dense overlaps make predictions compete for the same instances.
    rng = np.random.default_rng(seed)
    names = ["A", "B", "C", "D"]
    videos = ["v0", "v1", "v2", "v3"]

    def segment():
        start = int(rng.integers(0, 40))
        return start, start + int(rng.integers(0 if seed % 2 else 1, 12))

    instances = [(videos[rng.integers(4)], names[rng.integers(4)], *segment())
                 for _ in range(40)]
    instances += instances[:3]  # duplicated instances
    labels = sorted({g[1] for g in instances})
    predictions = [(f"{'vw'[int(rng.random() < 0.1)]}{rng.integers(4)}",
                    labels[rng.integers(len(labels))],
                    round(float(rng.random()), 1),
                    *segment()) for _ in range(300)]
    thresholds = [0.0, 0.1, 0.3, 0.5, 0.7, 0.95]
    metrics = _evaluate(instances, predictions, thresholds)
    class_names = list(metrics["ap_per_class"])
    expected = _reference_ap(instances, _results(predictions), class_names,
                             thresholds)
    np.testing.assert_allclose(
        [metrics["ap_per_class"][name] for name in class_names], expected,
        rtol=0, atol=1e-9)
    np.testing.assert_allclose(metrics["mAP"], expected.mean(axis=0), rtol=0,
                               atol=1e-9)
