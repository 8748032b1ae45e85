"""Flagfiles parse and carry the published settings; impossible settings are
refused with one clear message."""
import os

import pytest

from dgam_tf import flag_parsing, flags as dgam_flags
from dgam_tf.errors import UserError

FLAGS_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "flags")


def load(name, **overrides):
    return dgam_flags.flag_values([f"--flagfile={os.path.join(FLAGS_DIR, name)}"], **overrides)


@pytest.mark.parametrize("name", ["synthetic.cfg", "smoke.cfg", "thumos14.cfg",
                                  "activitynet12.cfg"])
def test_flagfiles_parse_and_validate(name):
    flag_parsing.parse(load(name))


def test_synthetic_flagfile_equals_the_defaults():
    defaults, cfg = dgam_flags.flag_values(), load("synthetic.cfg")
    for name in ("epochs", "batch_size", "num_segments", "ramp_epochs", "loss_weights_rgb",
                 "loss_weights_flow", "fusion_alpha", "proposal_threshold", "model_dir"):
        assert getattr(cfg, name) == getattr(defaults, name), name


def test_published_loss_weights_and_localization_settings():
    # docs/method.md §3 table and §5.
    thumos, anet = (flag_parsing.parse(load(name)) for name in ("thumos14.cfg",
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


# Each numeric flag: a value just outside its valid range (refused, with the
# range in the message) and the edge values just inside it (accepted).
RANGES = [
    # flag, refused values, accepted values, the range as the message says it
    ("class_threshold", ["1.5", "-0.1", "1", "nan"], ["0", "0.99"], "in [0, 1)"),
    ("nms_iou", ["-1", "1.01", "nan"], ["0", "1"], "in [0, 1]"),
    ("proposal_threshold", ["2,3", "0.1,-0.1", "1,0.5"], ["0,0.99"], "in [0, 1)"),
    ("fusion_alpha", ["1.2,0.5", "0.5,-0.5"], ["0,1"], "in [0, 1]"),
    ("outer_weight", ["nan", "-0.1", "inf"], ["0", "5"], "not negative"),
    ("proposal_smooth_sigma", ["-1", "nan"], ["0", "25"], "not negative"),
    ("learning_rate", ["0", "-1e-3", "nan"], ["1e-9"], "positive"),
    ("adam_beta1", ["1", "-0.1"], ["0", "0.999"], "in [0, 1)"),
    ("adam_beta2", ["1", "nan"], ["0.5"], "in [0, 1)"),
    ("adam_epsilon", ["0"], ["1e-12"], "positive"),
    ("cvae_weight", ["-1"], ["0"], "not negative"),
    ("beta", ["-0.1", "nan"], ["0"], "not negative"),
    ("loss_weights_flow", ["1,0.03,-0.1,0.3", "1,nan,0.1,0.3"], ["0,0,0,0"], "not negative"),
    ("tiou_thresholds", ["0,0.5", "0.5,1.1"], ["0.05,1"], "in (0, 1]"),
    ("attention_high", ["1.5"], ["0", "1"], "in [0, 1]"),
    ("cls_high", ["-0.5"], ["1"], "in [0, 1]"),
    ("epochs", ["0"], ["1"], "at least 1"),
    ("ramp_epochs", ["0"], ["1"], "at least 1"),
    ("ramp_chunk_epochs", ["-2"], ["1"], "at least 1"),
    ("keep_checkpoints", ["0"], ["1"], "at least 1"),
    ("latent_dim", ["0"], ["1"], "at least 1"),
    ("attention_hidden", ["-4"], ["1"], "at least 1"),
    ("batch_reuse_epochs", ["0"], ["1"], "at least 1"),
    ("eval_every", ["-1"], ["0"], "not negative"),
    ("shuffle_buffer", ["-1"], ["0"], "not negative"),
    ("cpu_devices", ["-1"], ["0"], "not negative"),
    ("seed", ["-1"], ["0"], "not negative"),
    ("export_version", ["0"], ["1"], "at least 1"),
    ("table_rows", ["0"], ["1"], "at least 1"),
]


@pytest.mark.parametrize("flag, refused, accepted, words", RANGES, ids=[r[0] for r in RANGES])
def test_each_numeric_flag_has_its_range_checked(flag, refused, accepted, words):
    for value in refused:
        with pytest.raises(UserError) as e:
            dgam_flags.parse_args([f"--{flag}={value}"])
        assert str(e.value).startswith(f"--{flag} must be {words}, got "), (value, str(e.value))
    for value in accepted:
        dgam_flags.parse_args([f"--{flag}={value}"])


@pytest.mark.parametrize("mode, argv, message", [
    ("convert", ["--stride=0"], "--stride must be at least 1, got 0"),
    ("convert", ["--fps=0"], "--fps must be positive, got 0"),
    ("extract", ["--flow_bound=-1"], "--flow_bound must be positive, got -1"),
    ("extract", ["--crop_size=300"], "--crop_size exceeds --resize_short_side"),
    ("extract", ["--clips_per_batch=0"], "--clips_per_batch must be at least 1, got 0"),
    ("synth", ["--batch_size=0"], "--batch_size must be at least 1, got 0"),
])
def test_ranges_are_checked_in_every_mode_that_reads_them(mode, argv, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        dgam_flags.parse_args([f"--mode={mode}"] + argv)


def test_help_groups_hold_every_flag_once_in_the_issue_order():
    fv = dgam_flags.flag_values()
    groups = dgam_flags.flag_groups(fv)
    assert list(groups) == ["general", "data", "model", "training", "localization",
                            "evaluation", "export", "feature extraction", "plots", "study", "detection"]
    names = [flag.name for group in groups.values() for flag in group]
    assert sorted(names) == sorted(fv) and len(names) == len(set(names))
    assert "epochs" in [f.name for f in groups["training"]]
    assert "source_format" in [f.name for f in groups["data"]]   # converters: data
    assert "i3d_rgb_checkpoint" in [f.name for f in groups["feature extraction"]]
    assert [f.name for f in groups["plots"]] == ["plot_min_score", "plot_frames"]
    assert [f.name for f in groups["detection"]] == ["video", "output_detections_json", "plot",
                                                     "table_rows"]


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


def test_detect_flags_fill_the_detect_and_extract_configs():
    cfg = dgam_flags.parse_args(["--mode=detect", "--video=a.mp4", "--video=b.avi", "--plot",
                                 "--output_detections_json=d.json", "--crop_size=32",
                                 "--resize_short_side=40", "--i3d_rgb_checkpoint=w"])
    assert (cfg.detect.videos, cfg.detect.plot, cfg.detect.output_detections_json) == (
        ("a.mp4", "b.avi"), True, "d.json")
    assert (cfg.extract.crop_size, cfg.extract.resize_short_side,
            cfg.extract.i3d_rgb_checkpoint) == (32, 40, "w")
    with pytest.raises(UserError, match="--crop_size exceeds --resize_short_side"):
        dgam_flags.parse_args(["--mode=detect", "--crop_size=300"])


@pytest.mark.parametrize("argv, expected", [
    ([], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    (["--dataset=activitynet12"], [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]),
    (["--dataset=activitynet12", "--tiou_thresholds=0.3,0.7"], [0.3, 0.7]),
])
def test_thresholds_follow_the_dataset_unless_given(argv, expected):
    for mode in ("train", "eval_detections"):
        thresholds = dgam_flags.parse_args(argv + [f"--mode={mode}"]).evaluation.tiou_thresholds
        assert thresholds == pytest.approx(expected, abs=1e-12)
