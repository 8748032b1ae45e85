"""Flagfiles parse and carry the published settings; impossible settings are
refused with one clear message."""
import os

import pytest

from dgam_tf import flags as dgam_flags
from dgam_tf.errors import UserError

FLAGS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "flags")


def load(name, **overrides):
    return dgam_flags.flag_values([f"--flagfile={os.path.join(FLAGS_DIR, name)}"], **overrides)


@pytest.mark.parametrize("name", ["synthetic.cfg", "smoke.cfg", "thumos14.cfg",
                                  "activitynet12.cfg"])
def test_flagfiles_parse_and_validate(name):
    dgam_flags.parse(load(name))


def test_synthetic_flagfile_equals_the_defaults():
    defaults, cfg = dgam_flags.flag_values(), load("synthetic.cfg")
    for name in ("epochs", "batch_size", "num_segments", "ramp_epochs", "loss_weights_rgb",
                 "loss_weights_flow", "fusion_alpha", "proposal_threshold", "model_dir"):
        assert getattr(cfg, name) == getattr(defaults, name), name


def test_published_loss_weights_and_localization_settings():
    # docs/method.md §3 table and §5.
    thumos, anet = (dgam_flags.parse(load(name)) for name in ("thumos14.cfg",
                                                              "activitynet12.cfg"))
    assert thumos.train.loss_weights["rgb"] == (1, 0.03, 0.1, 0.5)
    assert thumos.train.loss_weights["flow"] == (1, 0.03, 0.1, 0.3)
    assert anet.train.loss_weights["rgb"] == (1, 1, 0.1, 0.1)
    assert anet.train.loss_weights["flow"] == (0.3, 1, 0.1, 0.1)
    assert thumos.train.ramp_recon and not anet.train.ramp_recon
    assert thumos.localization.fusion_alpha == {"rgb": 0.35, "flow": 0.65}
    assert thumos.localization.proposal_threshold == {"rgb": 0.03, "flow": 0.08}
    assert anet.localization.proposal_threshold == {"rgb": 0.01, "flow": 0.01}
    assert anet.localization.smooth_sigma == 25 and thumos.localization.smooth_sigma == 0
    assert (thumos.data.test_min_segments, thumos.data.test_max_segments) == (50, 400)
    assert (anet.data.test_min_segments, anet.data.test_max_segments) == (2, 200)
    assert (thumos.train.cvae_weight, thumos.train.beta, thumos.train.ramp_epochs) == \
        (10, 0.1, 300)
    assert (thumos.train.learning_rate, thumos.train.adam_beta1, thumos.train.adam_beta2) == \
        (1e-3, 0.8, 0.999)


def test_command_line_overrides_the_flagfile():
    cfg = dgam_flags.flag_values([f"--flagfile={os.path.join(FLAGS_DIR, 'thumos14.cfg')}",
                                  "--epochs=7"])
    assert cfg.epochs == 7 and cfg.batch_size == 32


@pytest.mark.parametrize("overrides,message", [
    (dict(streams=["rgb", "depth"]), "--streams must be a non-empty subset"),
    (dict(streams=["rgb", "rgb"]), "lists a stream twice"),
    (dict(num_segments=0), "--num_segments must be at least 1"),
    (dict(batch_size=0), "--batch_size must be at least 1"),
    (dict(feature_dim=0), "--feature_dim must be at least 1"),
    (dict(test_min_segments=500), "--test_min_segments exceeds --test_max_segments"),
    (dict(loss_weights_rgb=["1", "2"]), "--loss_weights_rgb needs 4 numbers"),
    (dict(fusion_alpha=["a", "b"]), "--fusion_alpha must be numbers"),
    (dict(profile_steps=["5", "2"]), "--profile_steps needs 0 <= START < END"),
    (dict(learning_rate=0.0), "--learning_rate must be positive"),
])
def test_impossible_settings_are_refused(overrides, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        dgam_flags.parse_args(**overrides)


def test_help_groups_hold_every_flag_once_in_the_issue_order():
    fv = dgam_flags.flag_values()
    groups = dgam_flags.flag_groups(fv)
    assert list(groups) == ["general", "data", "model", "training", "localization",
                            "evaluation", "export", "feature extraction"]
    names = [flag.name for group in groups.values() for flag in group]
    assert sorted(names) == sorted(fv) and len(names) == len(set(names))
    assert "epochs" in [f.name for f in groups["training"]]
    assert "source_format" in [f.name for f in groups["data"]]   # converters: data
    assert "i3d_rgb_checkpoint" in [f.name for f in groups["feature extraction"]]


def test_extract_flags_fill_the_extract_config_and_bad_ones_are_one_line():
    cfg = dgam_flags.parse_args(["--mode=extract", "--video_dir=v", "--crop_size=32",
                                 "--resize_short_side=40", "--streams=rgb",
                                 "--mixed_precision=mixed_bfloat16"])
    assert (cfg.extract.video_dir, cfg.extract.crop_size, cfg.extract.resize_short_side,
            cfg.extract.segment_frames, cfg.extract.fps) == ("v", 32, 40, 16, 25.0)
    assert cfg.data.streams == ("rgb",) and cfg.train.mixed_precision == "mixed_bfloat16"
    for argv, culprit in ((["--crop_size=300"], "--crop_size"),
                          (["--segment_frames=0"], "--segment_frames"),
                          (["--flow_bound=-1"], "--flow_bound")):
        with pytest.raises(UserError, match=culprit):
            dgam_flags.parse_args(["--mode=extract"] + argv)


@pytest.mark.parametrize("argv, expected", [
    ([], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    (["--dataset=activitynet12"], [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]),
    (["--dataset=activitynet12", "--tiou_thresholds=0.3,0.7"], [0.3, 0.7]),
])
def test_thresholds_follow_the_dataset_unless_given(argv, expected):
    for mode in ("train", "eval_detections"):
        thresholds = dgam_flags.parse_args(argv + [f"--mode={mode}"]).evaluation.tiou_thresholds
        assert thresholds == pytest.approx(expected, abs=1e-12)
