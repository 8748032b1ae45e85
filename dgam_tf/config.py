"""The settings of dgam-tf: one frozen dataclass per concern (the modes
around training and evaluation have theirs in mode_config.py; Config
bundles them all).

`dgam_tf.flag_parsing.parse` builds them once from the command line (main.py
is its only caller); library code takes the parts it reads, and a library user
builds them directly, e.g. `TrainConfig(epochs=5)`. The defaults are the
built-in synthetic setup (flags/synthetic.cfg); the published settings of
THUMOS14 and ActivityNet 1.2 are the flagfiles in flags/, of which
`LocalizationConfig.for_dataset` and `DATASET_TIOU_THRESHOLDS` hold the
localization and evaluation parts (tests/test_config.py checks they agree).

No TensorFlow or absl here: these are plain values.
"""
import dataclasses
import os
from typing import Mapping, Optional, Tuple

import numpy as np

from dgam_tf.errors import UserError
from dgam_tf.mode_config import (ConvertConfig, DetectConfig, ExportConfig, ExtractConfig,
                                 StudyConfig)
from dgam_tf.ranges import Ranged

STREAMS = ("rgb", "flow")
# Seconds covered by one feature segment: 16 frames at 25 fps.
SECONDS_PER_SEGMENT = 16 / 25
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "dgam_tf")

# The tIoU thresholds the papers report (linspace values, as in the release).
THUMOS14_TIOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.1, 0.9, 9))
ACTIVITYNET_TIOU_THRESHOLDS = tuple(float(t) for t in np.linspace(0.5, 0.95, 10))
DATASET_TIOU_THRESHOLDS = {"activitynet12": ACTIVITYNET_TIOU_THRESHOLDS}


def _dict_field(mapping):
    """A dataclass field whose default is a fresh copy of `mapping` per instance."""
    return dataclasses.field(default_factory=lambda: dict(mapping))

@dataclasses.dataclass(frozen=True)
class DataConfig(Ranged):
    """Which records, and how videos are sampled from them.

    Attributes:
      data_dir: folder of records (dataset.json + shards); None: the built-in
        synthetic data of `synthetic_preset`, generated once into
        `synthetic_cache`.
      dataset: evaluation protocol ("synthetic", "thumos14", "activitynet12").
      streams: streams read ("rgb", "flow").
      feature_dim, num_classes: when set, the records must have them.
      num_segments: n segments sampled per training video.
      test_min_segments, test_max_segments: test sampling n = clip(T, min, max).
      batch_size: global training batch (last partial batch dropped).
      seed: seed of the shuffles, segment samples and CVAE noise.
      shuffle_buffer: 0 = a permutation of the whole split per stage; N > 0
        a local shuffle over interleaved shards.
      batch_reuse_epochs: draw batches once per this many epochs.
      data_residency: "auto", "memory" or "stream" (data/resident.py).
      skip_bad_records: leave out unreadable records instead of stopping.
    """
    data_dir: Optional[str] = None
    synthetic_preset: str = "basic"
    synthetic_cache: str = os.path.join(DEFAULT_CACHE, "synthetic")
    dataset: str = "synthetic"
    streams: Tuple[str, ...] = STREAMS
    feature_dim: Optional[int] = None
    num_classes: Optional[int] = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    num_segments: int = 200
    test_min_segments: int = 50
    test_max_segments: int = 400
    batch_size: int = 32
    seed: int = 0
    shuffle_buffer: int = 0
    batch_reuse_epochs: int = 1
    data_residency: str = "auto"
    skip_bad_records: bool = False

    RANGES = {name: "[1, inf)" for name in (
        "feature_dim", "num_classes", "num_segments", "test_min_segments",
        "test_max_segments", "batch_size", "batch_reuse_epochs")}
    RANGES.update(shuffle_buffer="[0, inf)", seed="[0, inf)")

    def __post_init__(self):
        if not self.streams or any(s not in STREAMS for s in self.streams):
            raise UserError(f"--streams must be a non-empty subset of rgb,flow, got "
                            f"{','.join(self.streams)}")
        if len(set(self.streams)) != len(self.streams):
            raise UserError("--streams lists a stream twice")
        super().__post_init__()
        if self.test_min_segments > self.test_max_segments:
            raise UserError("--test_min_segments exceeds --test_max_segments")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Ranged):
    """What defines a trained model; model.json is its JSON (`to_json`).

    Attributes:
      streams: one model per stream.
      attention_hidden, cvae_hidden, latent_dim: layer sizes.
      gam: with the CVAE (generative attention modeling).
      feature_dim, class_names: of the data it is trained on (None and ()
        until `for_data`).
      dataset: the --dataset it was trained for.
    """
    streams: Tuple[str, ...] = STREAMS
    attention_hidden: int = 256
    cvae_hidden: int = 128
    latent_dim: int = 128
    gam: bool = True
    feature_dim: Optional[int] = None
    class_names: Tuple[str, ...] = ()
    dataset: str = "synthetic"

    RANGES = {name: "[1, inf)" for name in ("attention_hidden", "cvae_hidden", "latent_dim")}

    @property
    def num_classes(self):
        return len(self.class_names)

    def for_data(self, info):
        """This config with the feature size and classes of a DatasetInfo."""
        return dataclasses.replace(self, feature_dim=info.feature_dim,
                                   class_names=tuple(info.class_names))

    def to_json(self):
        """model.json's object (lists for tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, obj):
        """The config of a model.json object (unknown keys ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v
                      for k, v in obj.items() if k in names})


@dataclasses.dataclass(frozen=True)
class TrainConfig(Ranged):
    """The two-stage training (docs/method.md §4) and how it runs.

    Attributes:
      epochs: each a CVAE stage and an attention stage.
      seed: seed of the initialisation.
      initializer: "pytorch" (the release's) or "glorot" (Keras').
      learning_rate, adam_beta1, adam_beta2, adam_epsilon: both Adams.
      loss_weights: {stream: (L_fg, L_bg, L_guide, L_recon) weights}.
      ramp_recon: multiply the L_recon weight by r(e).
      cvae_weight, beta: CVAE-stage weight (times r(e)) and its KL weight.
      ramp_epochs, ramp_chunk_epochs: r(e) (losses.ramp).
      eval_every: validate (and keep the best) every N epochs; 0 never.
      num_plots: validation videos drawn as summary images.
      keep_checkpoints: latest checkpoints kept.
      jit_compile, mixed_precision: XLA; Keras mixed-precision policy.
      strategy: "default", "mirrored" or "multi_worker"; cpu_devices:
        logical CPU devices to split into (0: none).
      deterministic: TF op determinism.
      profile_steps: (start, end) global steps to profile, or None.
      debug_numerics: TF's op-level NaN/Inf checks.
      progress: a progress bar (terminal) or a line per epoch.
    """
    epochs: int = 30
    seed: int = 0
    initializer: str = "pytorch"
    learning_rate: float = 1e-3
    adam_beta1: float = 0.8
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    loss_weights: Mapping[str, Tuple[float, float, float, float]] = _dict_field(
        {"rgb": (1.0, 0.03, 0.1, 0.5), "flow": (1.0, 0.03, 0.1, 0.3)})
    ramp_recon: bool = True
    cvae_weight: float = 10.0
    beta: float = 0.1
    ramp_epochs: int = 10
    ramp_chunk_epochs: int = 1
    eval_every: int = 10
    num_plots: int = 4
    keep_checkpoints: int = 3
    jit_compile: bool = False
    mixed_precision: Optional[str] = None
    strategy: str = "default"
    cpu_devices: int = 0
    deterministic: bool = False
    profile_steps: Optional[Tuple[int, int]] = None
    debug_numerics: bool = False
    progress: bool = True

    RANGES = {name: "[1, inf)" for name in (
        "epochs", "ramp_epochs", "ramp_chunk_epochs", "keep_checkpoints")}
    RANGES.update({name: "[0, inf)" for name in (
        "seed", "eval_every", "num_plots", "cpu_devices", "cvae_weight", "beta",
        "loss_weights")},
        learning_rate="(0, inf)", adam_epsilon="(0, inf)", adam_beta1="[0, 1)",
        adam_beta2="[0, 1)")


@dataclasses.dataclass(frozen=True)
class LocalizationConfig(Ranged):
    """Hyper-parameters of §5; the defaults are the THUMOS14 ones.

    Attributes:
      class_threshold: classes with probability above it are predicted (else
        the argmax alone).
      fusion_alpha: per stream, the weight of its own T-CAM in the score v
        (the other stream's T-CAM gets 1 - alpha).
      proposal_threshold: per stream, positions where
        (1 - attention_weight) u + attention_weight lambda^2 (smoothed if
        `smooth_sigma` > 0) is above it are kept.
      smooth_sigma: sigma in upsampled positions of the Gaussian smoothing of
        that quantity before thresholding (scipy's gaussian_filter1d
        defaults: 'reflect' borders, radius int(4 sigma + 0.5)); 0 = none.
      upsample: upsampling factor of u, v and lambda.
      attention_weight: the 0.2 in 0.8 u + 0.2 lambda^2.
      outer_weight: weight of the outer means in the outer-inner score.
      nms_iou: IoU above which NMS drops a fused proposal.
    """
    class_threshold: float = 0.1
    fusion_alpha: Mapping[str, float] = _dict_field({"rgb": 0.35, "flow": 0.65})
    proposal_threshold: Mapping[str, float] = _dict_field({"rgb": 0.03, "flow": 0.08})
    smooth_sigma: float = 0.0
    upsample: int = 20
    attention_weight: float = 0.2
    outer_weight: float = 0.3
    nms_iou: float = 0.5

    RANGES = dict(class_threshold="[0, 1)", fusion_alpha="[0, 1]",
                  proposal_threshold="[0, 1)", smooth_sigma="[0, inf)", upsample="[1, inf)",
                  attention_weight="[0, 1]", outer_weight="[0, inf)", nms_iou="[0, 1]")
    FLAGS = dict(smooth_sigma="proposal_smooth_sigma")

    @classmethod
    def for_dataset(cls, dataset):
        """The published settings for "thumos14" or "activitynet12".

        Raises:
          UserError: unknown dataset name.
        """
        if dataset == "thumos14":
            return cls()
        if dataset == "activitynet12":
            return cls(fusion_alpha={"rgb": 0.5, "flow": 0.5},
                       proposal_threshold={"rgb": 0.01, "flow": 0.01},
                       smooth_sigma=25.0)
        raise UserError(f"unknown dataset {dataset!r} for localization "
                         "settings; expected 'thumos14' or 'activitynet12'")


@dataclasses.dataclass(frozen=True)
class EvalConfig(Ranged):
    """Scoring a trained model, or a result file.

    Attributes:
      tiou_thresholds: of the mAP table.
      checkpoint: "latest", "best" or a checkpoint path.
      attention_checkpoint, classifier_checkpoint: module swap (paper §7):
        model folders to take that module from.
      attention_high, cls_high: frame-set statistics' "high" thresholds.
      output_metrics_json: metrics path (None: <model_dir>/metrics.json).
      num_plots, plot_videos: videos drawn by --mode=visualize.
      gt_json, predictions_json, subset: --mode=eval_detections' inputs.
    """
    tiou_thresholds: Tuple[float, ...] = THUMOS14_TIOU_THRESHOLDS
    checkpoint: str = "latest"
    attention_checkpoint: Optional[str] = None
    classifier_checkpoint: Optional[str] = None
    attention_high: float = 0.5
    cls_high: float = 0.5
    output_metrics_json: Optional[str] = None
    num_plots: int = 4
    plot_videos: Tuple[str, ...] = ()
    gt_json: Optional[str] = None
    predictions_json: Optional[str] = None
    subset: str = "test"

    RANGES = dict(tiou_thresholds="(0, 1]", attention_high="[0, 1]", cls_high="[0, 1]",
                  num_plots="[0, inf)")


@dataclasses.dataclass(frozen=True)
class PlotConfig(Ranged):
    """The timeline pictures (visualization/timeline.py).

    Attributes:
      min_score: detections scoring below it are not drawn (outer-inner
        scores lie in [-1, 1]).
      frames: a strip of video thumbnails, when frames are available.
    """
    min_score: float = 0.1
    frames: bool = False

    RANGES = dict(min_score="[-1, 1]")
    FLAGS = dict(min_score="plot_min_score", frames="plot_frames")


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything one run of `python -m dgam_tf.main` was asked to do."""
    mode: str = "train"
    model_dir: str = os.path.join("runs", "synthetic")
    tf_logs: bool = False
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    localization: LocalizationConfig = LocalizationConfig()
    evaluation: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()
    convert: ConvertConfig = ConvertConfig()
    extract: ExtractConfig = ExtractConfig()
    plot: PlotConfig = PlotConfig()
    study: StudyConfig = StudyConfig()
    detect: DetectConfig = DetectConfig()
