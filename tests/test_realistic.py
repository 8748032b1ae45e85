"""The realistic synthetic preset: THUMOS14-like layouts and I3D-like feature
statistics, checked by counting on the generated arrays."""
import numpy as np
import pytest

from conftest import read_videos

from dgam_tf.data import builtin, realistic, synthetic
from dgam_tf.data.synthetic import ACTION, BACKGROUND

SMALL = realistic.RealisticConfig(feature_dim=256, num_train=4, num_test=4)


@pytest.fixture(scope="module")
def layouts():
    config = realistic.RealisticConfig()
    return [realistic.sample_layout(synthetic.keyed_rng(7, 99, 0, i), config)
            for i in range(300)]


def test_layouts_are_thumos14_like(layouts):
    lengths = np.array([layout.num_segments for layout in layouts])
    assert lengths.min() >= 50 and lengths.max() <= 1500
    assert 170 < np.median(lengths) < 300                     # about 2.5 minutes
    spans = [(s, e, c) for layout in layouts for s, e, c in layout.instances]
    assert 3 <= np.median([e - s for s, e, _ in spans]) <= 7  # short actions
    assert 5 <= len(spans) / len(layouts) <= 14                # many per video
    single = np.mean([len({c for _, _, c in l.instances}) == 1 for l in layouts])
    assert 0.75 < single < 0.95                                # mostly one class
    # Background is the majority of segments; actions never are.
    assert np.mean(np.concatenate([l.kind for l in layouts]) == BACKGROUND) > 0.6
    for layout in layouts:
        assert np.mean(layout.kind == ACTION) <= 0.5
        # Instances are apart and marked as such.
        starts_ends = sorted(layout.instances)
        assert all(a[1] < b[0] for a, b in zip(starts_ends, starts_ends[1:]))
        for s, e, c in layout.instances:
            assert np.all(layout.kind[s:e] == ACTION) and np.all(layout.class_id[s:e] == c)
        assert np.sum(layout.kind == ACTION) == sum(e - s for s, e, _ in layout.instances)


def test_features_are_sparse_heavy_tailed_and_differ_by_stream():
    gen = realistic.RealisticGenerator(SMALL, seed=0)
    videos = [gen.video("train", i)[0] for i in range(4)]
    x = {s: np.concatenate([v.features[s] for v in videos]) for s in ("rgb", "flow")}
    for s, feats in x.items():
        assert feats.dtype == np.float32 and feats.min() >= 0 and np.isfinite(feats).all()
        channel_means = feats.mean(0)
        # A few channels carry most of the mass.
        assert np.percentile(channel_means, 99) > 4 * np.median(channel_means), s
    zeros = {s: np.mean(feats == 0) for s, feats in x.items()}
    assert 0.3 < zeros["rgb"] < 0.7 and zeros["flow"] > zeros["rgb"] + 0.15, zeros
    assert x["flow"].max() > x["rgb"].max()


def test_videos_are_reproducible_and_labelled_by_their_instances():
    a = realistic.RealisticGenerator(SMALL, seed=3).video("test", 2)
    b = realistic.RealisticGenerator(SMALL, seed=3).video("test", 2)
    c = realistic.RealisticGenerator(SMALL, seed=4).video("test", 2)
    np.testing.assert_array_equal(a[0].features["flow"], b[0].features["flow"])
    assert a[0].features["flow"].shape != c[0].features["flow"].shape or not np.array_equal(
        a[0].features["flow"], c[0].features["flow"])
    video, layout = a
    assert video.labels == sorted({c for _, _, c in layout.instances})
    assert len(video.gt) == len(layout.instances)


def test_generate_writes_the_preset(tmp_path):
    from dgam_tf.data import records
    info = builtin.generate(str(tmp_path / "d"), preset="realistic", feature_dim=32,
                              num_train=3, num_test=2)
    assert info.feature_dim == 32 and info.num_classes == 20
    assert "realistic" in records.load_info(str(tmp_path / "d")).name
    assert [v.video_id for v in read_videos(str(tmp_path / "d"), "test")] == [
        "synthetic_test_00000", "synthetic_test_00001"]
