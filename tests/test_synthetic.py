"""Tests of dgam_tf/data/synthetic.py: determinism, format, learnability."""
import filecmp
import os

import numpy as np
import pytest

from conftest import read_videos

from dgam_tf.data import builtin, records, synthetic
from dgam_tf.errors import UserError

TINY = dict(num_classes=3, feature_dim=16, num_train=5, num_validation=2, num_test=3,
            min_segments=20, max_segments=80)


def test_same_seed_same_bytes_other_seed_other_features(tmp_path):
    paths = [tmp_path / name for name in ("a", "b", "c")]
    for path, seed in zip(paths, (7, 7, 8)):
        builtin.generate(str(path), seed=seed, num_shards=2, **TINY)
    files = sorted(os.listdir(paths[0]))
    # dataset.json, gt.json and 3 splits of 2 shards.
    assert {"dataset.json", "gt.json"} <= set(files) and len(files) == 2 + 3 * 2
    match, mismatch, errors = filecmp.cmpfiles(paths[0], paths[1], files, shallow=False)
    assert (mismatch, errors) == ([], [])
    first = read_videos(str(paths[0]), "train")[0]
    other = read_videos(str(paths[2]), "train")[0]
    assert not np.array_equal(first.features["rgb"][:5], other.features["rgb"][:5])


def test_videos_match_their_labels_and_ground_truth(tmp_path):
    info = builtin.generate(str(tmp_path / "d"), seed=3, **TINY)
    assert info.class_names == ["action_00", "action_01", "action_02"]
    assert (info.streams, info.feature_dim) == (["rgb", "flow"], 16)
    assert records.load_info(str(tmp_path / "d")) == info
    for split, count in (("train", 5), ("validation", 2), ("test", 3)):
        videos = list(read_videos(str(tmp_path / "d"), split))
        assert len(videos) == info.splits[split]["num_videos"] == count
        for video in videos:
            t = video.num_segments
            assert 20 <= t <= 80
            for x in video.features.values():
                assert x.shape == (t, 16) and x.min() >= 0
            assert video.duration == pytest.approx(t * 0.64, rel=1e-6)
            assert video.seconds_per_segment == pytest.approx(0.64)
            assert 1 <= len(video.labels) <= 2
            assert video.labels == sorted({c for _, _, c in video.gt})
            for start, end, _ in video.gt:
                assert 0 <= start < end <= video.duration + 1e-4
                assert 3 <= round((end - start) / 0.64) <= 30


def test_layout_agrees_with_the_video():
    generator = synthetic.SyntheticGenerator(synthetic.SyntheticConfig(**TINY), seed=5)
    for index in range(10):
        video, layout = generator.video("train", index)
        for (s, e, c), (gs, ge, gc) in zip(layout.instances, video.gt):
            assert (s * 0.64, e * 0.64, c) == (pytest.approx(gs), pytest.approx(ge), gc)
            assert (layout.kind[s:e] == synthetic.ACTION).all()
            assert (layout.class_id[s:e] == c).all()
        # Context only ever belongs to a class of the video.
        assert set(layout.class_id[layout.kind == synthetic.CONTEXT]) <= set(video.labels)
        assert (layout.class_id[layout.kind == synthetic.BACKGROUND] == -1).all()


def _auc(positive, negative):
    """Probability that a positive scores above a negative (Mann-Whitney)."""
    ranks = np.argsort(np.argsort(np.concatenate([positive, negative]))) + 1
    n = len(positive)
    return (ranks[:n].sum() - n * (n + 1) / 2) / (n * len(negative))


def _segments(generator, split, count, stream):
    """Features [N, D], kind [N] and class [N] of all segments of a split."""
    parts = [generator.video(split, i) for i in range(count)]
    return (np.concatenate([v.features[stream] for v, _ in parts]),
            np.concatenate([layout.kind for _, layout in parts]),
            np.concatenate([layout.class_id for _, layout in parts]))


@pytest.fixture(scope="module")
def generator():
    # The default context strength, on fewer and shorter videos.
    config = synthetic.SyntheticConfig(num_classes=4, feature_dim=128, min_segments=60,
                                       max_segments=120)
    return synthetic.SyntheticGenerator(config, seed=0)


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_actions_are_linearly_separable_from_background(generator, stream):
    # Mean-difference probe fitted on train, scored on test.
    x, kind, _ = _segments(generator, "train", 30, stream)
    w = x[kind == synthetic.ACTION].mean(0) - x[kind == synthetic.BACKGROUND].mean(0)
    x, kind, _ = _segments(generator, "test", 30, stream)
    score = x @ w
    assert _auc(score[kind == synthetic.ACTION], score[kind == synthetic.BACKGROUND]) > 0.95
    # Context scores above background, but below action.
    assert _auc(score[kind == synthetic.CONTEXT], score[kind == synthetic.BACKGROUND]) > 0.55
    assert _auc(score[kind == synthetic.ACTION], score[kind == synthetic.CONTEXT]) > 0.75


def test_context_is_class_correlated_weaker_than_the_action_and_stronger_in_rgb(generator):
    ratios = {}
    for stream in ("rgb", "flow"):
        x, kind, class_id = _segments(generator, "train", 40, stream)
        background = x[kind == synthetic.BACKGROUND].mean(0)
        action, context = [np.stack([x[(kind == k) & (class_id == c)].mean(0) - background
                                     for c in range(4)])
                           for k in (synthetic.ACTION, synthetic.CONTEXT)]
        # Context of class c leans towards class c's action more than towards
        # any other class's action.
        lean = context @ (action / np.linalg.norm(action, axis=1, keepdims=True)).T
        assert (lean.argmax(axis=1) == np.arange(4)).all()
        # As in real videos, context moves the features less than the action.
        assert (np.linalg.norm(context, axis=1) < 0.9 * np.linalg.norm(action, axis=1)).all()
        ratios[stream] = np.mean(np.sum(context * action, 1) / np.sum(action * action, 1))
    assert 0 < ratios["flow"] < ratios["rgb"] < 1


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_actions_of_an_unseen_class_look_like_actions(generator, stream):
    # Actions share an "actionness": a probe fitted on the other classes'
    # actions ranks class c's actions above background and above its context.
    x, kind, class_id = _segments(generator, "train", 40, stream)
    xt, kind_t, class_t = _segments(generator, "test", 30, stream)
    background = x[kind == synthetic.BACKGROUND].mean(0)
    for c in range(4):
        score = xt @ (x[(kind == synthetic.ACTION) & (class_id != c)].mean(0) - background)
        action = score[(kind_t == synthetic.ACTION) & (class_t == c)]
        assert _auc(action, score[kind_t == synthetic.BACKGROUND]) > 0.95
        assert _auc(action, score[(kind_t == synthetic.CONTEXT) & (class_t == c)]) > 0.8


def test_difficulty_knobs_act_where_they_should():
    def video(**knobs):
        config = synthetic.SyntheticConfig(**dict(TINY, **knobs))
        return synthetic.SyntheticGenerator(config, seed=1).video("test", 0)

    base, layout = video()
    no_context, _ = video(context_strength=0.0)
    louder, _ = video(noise=3.0)
    assert louder.gt == no_context.gt == base.gt
    # Context, blurred by one segment each side, is the only difference.
    is_context = layout.kind == synthetic.CONTEXT
    assert is_context.any()
    near_context = np.convolve(is_context, [1, 1, 1], mode="same") > 0
    for stream in ("rgb", "flow"):
        differs = (base.features[stream] != no_context.features[stream]).any(axis=1)
        assert differs[is_context].any() and not differs[~near_context].any()
    background = layout.kind == synthetic.BACKGROUND
    spread = [v.features["flow"][background].std() for v in (base, louder)]
    assert spread[1] > 1.5 * spread[0]


@pytest.mark.parametrize("bad", [dict(num_classes=0), dict(min_segments=10),
                                 dict(min_segments=90, max_segments=80), dict(noise=-1.0)])
def test_impossible_configs_are_user_errors(tmp_path, bad):
    with pytest.raises(UserError, match="synthetic"):
        builtin.generate(str(tmp_path / "d"), **dict(TINY, **bad))
    assert not (tmp_path / "d").exists()


def test_ground_truth_json_matches_the_records(tiny_data_dir, tiny_info):
    import json
    with open(os.path.join(tiny_data_dir, synthetic.GT_FILE)) as f:
        database = json.load(f)["database"]
    for split in ("train", "validation", "test"):
        videos = list(read_videos(tiny_data_dir, split))
        assert videos
        for video in videos:
            entry = database[video.video_id]
            assert entry["subset"] == split
            got = sorted((a["label"], *a["segment"]) for a in entry["annotations"])
            want = sorted((tiny_info.class_names[c], s, e) for s, e, c in video.gt)
            assert len(got) == len(want) > 0
            for g, w in zip(got, want):
                assert g[0] == w[0] and np.allclose(g[1:], w[1:], atol=1e-4)
    assert len(database) == sum(v["num_videos"] for v in tiny_info.splits.values())
