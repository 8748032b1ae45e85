"""Split evaluation (dgam_tf/evaluation/evaluate.py): the paper's frame-set
statistics and their sampling on hand-worked cases, the split mAP against the
standalone eval_detections path on the written files, and the module swap
(§7) against outputs computed in numpy from the two models' weights."""
import collections
import json
import os
import re
import shutil

import numpy as np
import pytest

from conftest import evaluate_fn, read_videos, tfrecord_ends, tiny_config, train
from dgam_tf.data import records, resolve
from dgam_tf.errors import UserError
from dgam_tf.evaluation import detection, evaluate
from dgam_tf.localization import inference
from dgam_tf.localization.localize import StreamOutput
from dgam_tf.models import model_dir as model_dir_lib


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def test_frame_statistics_by_hand():
    # (attention, cls score, in gt) per frame; "high" is > 0.5 for attention
    # and > 0.6 for cls (equal is not high). What each frame counts toward:
    first = [(0.9, 0.8, True),     # att & gt & cls: only |gt|
             (0.5, 0.9, True),     # gt - att
             (0.7, 0.2, False),    # att - gt
             (0.1, 0.7, False),    # (cls - gt) & not att
             (0.6, 0.6, True),     # (att & gt) - cls
             (0.3, 0.65, False)]   # (cls - gt) & not att
    second = [(0.8, 0.1, False),   # att - gt
              (0.55, 0.3, True),   # (att & gt) - cls
              (0.9, 0.95, False),  # att - gt (cls is high, but so is att)
              (0.99, 0.0, False),  # att - gt
              (0.7, 0.1, True)]    # (att & gt) - cls
    samples = [tuple(np.array(column) for column in zip(*video)) for video in (first, second)]
    # |gt| = 3 + 2 = 5; counts: att - gt 1 + 3, gt - att 1 + 0,
    # (cls - gt) & not att 2 + 0, (att & gt) - cls 1 + 2.
    assert evaluate.frame_statistics(samples, attention_high=0.5, cls_high=0.6) == \
        pytest.approx({"att_minus_gt": 4 / 5, "gt_minus_att": 1 / 5,
                       "cls_minus_gt_not_att": 2 / 5, "att_and_gt_minus_cls": 3 / 5})


@pytest.mark.parametrize("num_segments, seconds_per_segment, gt, expected_in_gt", [
    # n = 4 of T = 10 segments of 0.5 s: segments 0, 2, 5, 7, centred at
    # 0.25, 1.25, 2.75, 3.75 s. [0.3, 0.9] overlaps segment 0 but misses its
    # centre; a centre on an end (3.75) is inside.
    (10, 0.5, [(1.0, 2.0), (3.75, 4.0), (0.3, 0.9)], [False, True, False, True]),
    # n = 4 of T = 3 segments of 1 s (short video, repeats): segments 0, 0, 1,
    # 2 centred at 0.5, 0.5, 1.5, 2.5 s.
    (3, 1.0, [(1.2, 2.0)], [False, False, True, False]),
])
def test_frame_sample_maps_positions_to_ground_truth(num_segments, seconds_per_segment, gt,
                                                     expected_in_gt):
    tcam = np.array([[0.0, 2.0, 9.0], [-1.0, -3.0, 9.0], [np.log(3), 0.0, 9.0],
                     [5.0, -5.0, 9.0]], np.float32)
    output = StreamOutput(attention=np.array([0.1, 0.2, 0.3, 0.4], np.float32),
                          class_probs=np.array([0.2, 0.3, 0.4], np.float32), tcam=tcam)
    video = {"num_segments": np.int32(num_segments),
             "seconds_per_segment": np.float32(seconds_per_segment),
             "labels": np.array([0, 1]), "gt_start": np.array([s for s, _ in gt]),
             "gt_end": np.array([e for _, e in gt]), "gt_label": np.zeros(len(gt), int)}
    attention, cls, in_gt = evaluate.frame_sample(video, output)
    np.testing.assert_array_equal(attention, output.attention)
    # Labelled classes 0 and 1 (not 2): max logits 2, -1, log 3, 5.
    np.testing.assert_allclose(cls, [sigmoid(2.0), 1 / (1 + np.e), 0.75, sigmoid(5.0)],
                               rtol=1e-6)
    np.testing.assert_array_equal(in_gt, expected_in_gt)


def test_split_metrics_equal_eval_detections_on_the_written_files(
        tiny_data_dir, tiny_info, tiny_model_dir, tmp_path):
    config = tiny_config(tiny_data_dir, tmp_path)
    models, _, _ = model_dir_lib.load_models(tiny_model_dir)
    metrics = evaluate_fn(config)(models, tiny_data_dir, tiny_info, "test")
    evaluate.report(metrics, config.model_dir, config.evaluation)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == {**{k: v for k, v in metrics.items() if k != "results"},
                                "detections": str(tmp_path / "detections_test.json")}

    # Ground truth straight from the records, not through the pipeline.
    database = {v.video_id: {"subset": "test", "duration": v.duration, "annotations": [
        {"label": tiny_info.class_names[c], "segment": [s, e]} for s, e, c in v.gt]}
        for v in read_videos(tiny_data_dir, "test")}
    (tmp_path / "gt.json").write_text(json.dumps({"database": database}))
    gt_classes = {a["label"] for v in database.values() for a in v["annotations"]}
    # The detections file holds every class; classes without ground truth in
    # the split (action_00 in the tiny test split) do not enter the mAP (§6),
    # and eval_detections refuses labels unknown to the ground truth, so they
    # are left out here.
    with open(tmp_path / "detections_test.json") as f:
        results = json.load(f)
    assert results == metrics["results"]
    results["results"] = {video: [d for d in dets if d["label"] in gt_classes]
                          for video, dets in results["results"].items()}
    (tmp_path / "scored.json").write_text(json.dumps(results))
    standalone = detection.run_eval_detections(
        str(tmp_path / "gt.json"), str(tmp_path / "scored.json"), "test", None)

    assert metrics["num_predictions"] > 0 and max(metrics["mAP"]) > 0
    for key in ("tiou_thresholds", "mAP", "average_mAP", "ap_per_class", "num_predictions",
                "num_ground_truth", "average_mAP_0.1:0.5", "average_mAP_0.3:0.7"):
        assert metrics[key] == standalone[key], key


def outputs_by_hand(x, attention, classifier, num_classes):
    """(attention [n], class_probs [C], tcam [n, C]) in float64 numpy from
    the Dense weights of an Attention and a Classifier (§5 steps 1, 3)."""
    x = x.astype(np.float64)
    hidden = np.maximum(x @ attention.hidden.kernel.numpy() + attention.hidden.bias.numpy(), 0)
    att = sigmoid(hidden @ attention.score.kernel.numpy() + attention.score.bias.numpy())[:, 0]
    kernel, bias = classifier.fc.kernel.numpy(), classifier.fc.bias.numpy()
    logits = (att @ x / att.sum()) @ kernel + bias
    probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    return att, probs[:num_classes], x @ kernel[:, :num_classes]


@pytest.fixture(scope="module")
def baseline_model_dir(tiny_data_dir, tmp_path_factory):
    """A second tiny model: another seed, one epoch, without GAM (the
    paper's "O" model)."""
    model_dir = tmp_path_factory.mktemp("baseline") / "run"
    train(tiny_config(tiny_data_dir, model_dir, seed=1, epochs=1, gam=False))
    return str(model_dir)


def test_module_swap_uses_attention_of_one_model_and_classifier_of_the_other(
        tiny_data_dir, tiny_info, tiny_model_dir, baseline_model_dir, tmp_path):
    config = tiny_config(tiny_data_dir, tmp_path, attention_checkpoint=tiny_model_dir,
                         classifier_checkpoint=baseline_model_dir)
    data_dir, info, modules, _ = inference.restore(config.model_dir, config.data,
                                                   config.evaluation)
    gam, _, _ = model_dir_lib.load_models(tiny_model_dir)
    baseline, _, _ = model_dir_lib.load_models(baseline_model_dir)
    num_videos = 0
    for video, outputs, _ in inference.infer_split(modules, data_dir, info, "test",
                                                      config.data, config.localization):
        num_videos += 1
        for stream, output in outputs.items():
            x = video[stream]
            expected = outputs_by_hand(x, gam[stream].attention, baseline[stream].classifier,
                                       info.num_classes)
            for got, want in zip((output.attention, output.class_probs, output.tcam), expected):
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
            # The classifiers differ, so the check above tells them apart.
            unswapped = outputs_by_hand(x, gam[stream].attention, gam[stream].classifier,
                                        info.num_classes)
            assert not np.allclose(unswapped[1], expected[1], rtol=1e-3, atol=1e-4)
    assert num_videos == tiny_info.splits["test"]["num_videos"]


def test_module_swap_refuses_a_classifier_trained_on_other_classes(
        tiny_data_dir, tiny_model_dir, baseline_model_dir, tmp_path):
    other = shutil.copytree(baseline_model_dir, tmp_path / "other")
    settings = json.loads((other / model_dir_lib.SETTINGS_FILE).read_text())
    settings["class_names"] = settings["class_names"][::-1]
    (other / model_dir_lib.SETTINGS_FILE).write_text(json.dumps(settings))
    config = tiny_config(tiny_data_dir, tmp_path, attention_checkpoint=tiny_model_dir,
                         classifier_checkpoint=str(other))
    with pytest.raises(UserError, match=re.escape(f"model in {other} was trained on other")):
        inference.restore(config.model_dir, config.data, config.evaluation)


def test_data_of_other_classes_names_the_data_the_model_needs(tiny_data_dir, tiny_model_dir,
                                                             tmp_path):
    model = shutil.copytree(tiny_model_dir, tmp_path / "model")
    settings = json.loads((model / model_dir_lib.SETTINGS_FILE).read_text())
    settings["class_names"] = ["BaseballPitch", "BasketballDunk", "Billiards"]
    (model / model_dir_lib.SETTINGS_FILE).write_text(json.dumps(settings))
    # No --data_dir: the built-in data, here a copy of the tiny data in the cache.
    cache = tmp_path / "cache"
    shutil.copytree(tiny_data_dir, cache / f"v{resolve.SYNTHETIC_VERSION}")
    config = tiny_config("", model, synthetic_cache=str(cache))
    with pytest.raises(UserError) as e:
        inference.restore(config.model_dir, config.data, config.evaluation)
    assert str(e.value) == (
        f"the model in {model} was trained on other classes (3 classes: BaseballPitch, "
        f"BasketballDunk, Billiards) than those of {cache}/v{resolve.SYNTHETIC_VERSION}, "
        "the built-in synthetic data used as no --data_dir was given (3 classes: action_00, "
        "action_01, action_02); pass the --data_dir it was trained on")
    (model / "metrics.json").write_text(json.dumps({"source": {"data_dir": "/d/thumos14"}}))
    with pytest.raises(UserError, match=re.escape(
            "it was evaluated on /d/thumos14: pass --data_dir=/d/thumos14")):
        inference.restore(config.model_dir, config.data, config.evaluation)
    # A flagfile's --feature_dim, without --data_dir.
    with pytest.raises(UserError) as e:
        resolve.resolve_data(tiny_config("", model, synthetic_cache=str(cache),
                                         feature_dim=1024).data)
    assert str(e.value) == (
        f"--feature_dim=1024 but the records have feature size 16: {cache}/v"
        f"{resolve.SYNTHETIC_VERSION} (no --data_dir was given, so the built-in basic synthetic "
        "data was used)")


def test_a_test_split_cut_at_a_record_boundary_is_refused(tiny_data_dir, tiny_model_dir,
                                                          tmp_path):
    """Its shards read cleanly but one video short: scoring the rest would be
    silently wrong."""
    data_dir = shutil.copytree(tiny_data_dir, tmp_path / "cut")
    info = records.load_info(data_dir)
    shard = os.path.join(data_dir, info.splits["test"]["files"][0])
    raw = open(shard, "rb").read()
    with open(shard, "wb") as f:
        f.write(raw[:tfrecord_ends(raw)[0]])      # keep its first record only
    models, _, _ = model_dir_lib.load_models(tiny_model_dir)
    with pytest.raises(UserError, match=r"split 'test' of .* holds fewer videos than the 4 "):
        evaluate_fn(tiny_config(data_dir, tmp_path))(models, data_dir, info, "test")


def test_streams_alone_are_one_stream_evaluations_of_outputs_computed_once(
        tiny_data_dir, tiny_info, tiny_model_dir, tmp_path, monkeypatch, capsys):
    config = tiny_config(tiny_data_dir, tmp_path)
    modules = {s: (m.attention, m.classifier)
               for s, m in model_dir_lib.load_models(tiny_model_dir)[0].items()}
    calls, output_fn = collections.Counter(), inference.output_fn

    def counting_output_fn(attention, classifier, num_classes):
        fn = output_fn(attention, classifier, num_classes)
        return lambda x: calls.update([id(attention)]) or fn(x)
    monkeypatch.setattr(inference, "output_fn", counting_output_fn)
    both = evaluate.evaluate_modules(modules, tiny_data_dir, tiny_info, "test", config.data,
                                     config.localization, config.evaluation)
    num_videos = tiny_info.splits["test"]["num_videos"]
    assert calls == {id(attention): num_videos for attention, _ in modules.values()}
    for stream in ("rgb", "flow"):
        alone = evaluate.evaluate_modules({stream: modules[stream]}, tiny_data_dir, tiny_info,
                                          "test", config.data, config.localization,
                                          config.evaluation)
        assert "streams" not in alone and alone["num_predictions"] > 0
        for key in ("tiou_thresholds", "mAP", "average_mAP", "average_mAP_0.1:0.7",
                    "ap_per_class", "num_predictions", "num_ground_truth"):
            assert both["streams"][stream][key] == alone[key], key
    evaluate.report(alone, config.model_dir, config.evaluation)
    assert capsys.readouterr().out.startswith(
        f"Detection mAP (%) on {tiny_info.name}, test split, flow stream alone: ")


def test_another_checkpoint_keeps_its_outputs_together_and_says_what_made_them(
        tiny_data_dir, tiny_info, tiny_model_dir, tmp_path, capsys):
    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "model")
    before = sorted(os.listdir(model_dir))
    checkpoint = str(model_dir / "checkpoints" / "ckpt-1")
    # --dataset names the protocol; the title names the data (dataset.json).
    config = tiny_config(tiny_data_dir, model_dir, checkpoint=checkpoint, dataset="thumos14",
                         output_metrics_json=str(tmp_path / "m1.json"))
    metrics = evaluate.evaluate_model_dir(config.model_dir, config.data, config.localization,
                                          config.evaluation)
    evaluate.report(metrics, config.model_dir, config.evaluation)
    assert sorted(os.listdir(model_dir)) == before        # the model's own outputs untouched
    written = json.loads((tmp_path / "m1.json").read_text())
    assert written["detections"] == str(tmp_path / "m1_detections_test.json")
    assert json.loads((tmp_path / "m1_detections_test.json").read_text()) == metrics["results"]
    source = written["source"]
    assert {k: source[k] for k in ("checkpoint", "data_dir", "dataset", "streams", "sampling")} \
        == {"checkpoint": checkpoint, "data_dir": tiny_data_dir,
            "dataset": tiny_info.name, "streams": ["rgb", "flow"],
            "sampling": {"test_min_segments": 4, "test_max_segments": 40}}
    assert source["localization"]["fusion_alpha"] == {"rgb": 0.35, "flow": 0.65}
    assert source["localization"]["proposal_threshold"] == {"rgb": 0.03, "flow": 0.08}
    lines = capsys.readouterr().out.splitlines()
    assert tiny_info.name.startswith("synthetic")
    assert lines[0].startswith(f"Detection mAP (%) on {tiny_info.name}, test split: ")
    assert [line.split()[0] for line in lines[1:5]] == ["tIoU", "rgb", "flow", "fused"]
    for line, row in zip(lines[2:5], (written["streams"]["rgb"], written["streams"]["flow"],
                                      written)):
        assert line.split()[1:] == [f"{100 * m:.2f}" for m in row["mAP"]]
