"""Parsed flag values -> the typed settings (config.Config) of one run.

Takes absl's FlagValues (or anything with the same attributes) without
importing absl: list flags become numbers (a malformed one is a UserError
naming it), unset --tiou_thresholds the --dataset's, and each config checks
its ranges when built (ranges.Ranged), so an impossible value stops the run
here, before any work.
"""
import dataclasses

from dgam_tf import config as config_lib, mode_config
from dgam_tf.config import STREAMS
from dgam_tf.errors import UserError


def floats(values, name, count=None):
    """Parses a list flag of numbers; UserError names the flag when malformed."""
    try:
        out = [float(v) for v in values]
    except ValueError:
        raise UserError(f"--{name} must be numbers, got {','.join(values)}") from None
    if count is not None and len(out) != count:
        raise UserError(f"--{name} needs {count} numbers, got {len(out)}")
    return out


def _per_stream(fv, name):
    """A (rgb, flow) list flag as a dict stream -> float."""
    return dict(zip(STREAMS, floats(getattr(fv, name), name, count=len(STREAMS))))


def _profile_range(fv):
    """--profile_steps as (start, end) global steps, or None."""
    if not fv.profile_steps:
        return None
    try:
        start, end = (int(v) for v in fv.profile_steps)
    except ValueError:
        raise UserError(f"--profile_steps must be START,END, got "
                        f"{','.join(fv.profile_steps)}") from None
    if not 0 <= start < end:
        raise UserError("--profile_steps needs 0 <= START < END")
    return start, end


def parse(fv):
    """The Config of parsed flag values `fv`, validated once. A mode gets the
    parts it uses (the others keep their defaults): eval_detections the
    evaluation, synth and convert the data and conversion, the rest all."""
    run = dict(mode=fv.mode, model_dir=fv.model_dir, tf_logs=fv.tf_logs)
    if fv.mode == "eval_detections":
        return config_lib.Config(**run, evaluation=_eval_config(fv))
    if fv.mode == "export_i3d":
        return _export_i3d_config(fv, run)
    streams = tuple(fv.streams)
    data = config_lib.DataConfig(**_values(fv, config_lib.DataConfig, "streams"),
                                 streams=streams)
    convert = mode_config.ConvertConfig(**_values(fv, mode_config.ConvertConfig))
    if fv.mode in ("synth", "convert"):
        return config_lib.Config(**run, data=data, convert=convert)
    if fv.mode == "extract":
        train = config_lib.TrainConfig(mixed_precision=fv.mixed_precision)
        return config_lib.Config(**run, data=data, train=train, convert=convert,
                                 extract=mode_config.ExtractConfig(
                                     **_values(fv, mode_config.ExtractConfig)))
    model = config_lib.ModelConfig(**_values(fv, config_lib.ModelConfig, "streams",
                                             "feature_dim", "class_names"), streams=streams)
    train = config_lib.TrainConfig(
        **_values(fv, config_lib.TrainConfig, "loss_weights", "profile_steps"),
        loss_weights={s: tuple(floats(getattr(fv, f"loss_weights_{s}"), f"loss_weights_{s}",
                                      count=4)) for s in STREAMS},
        profile_steps=_profile_range(fv))
    localization = config_lib.LocalizationConfig(
        class_threshold=fv.class_threshold,
        fusion_alpha=_per_stream(fv, "fusion_alpha"),
        proposal_threshold=_per_stream(fv, "proposal_threshold"),
        smooth_sigma=fv.proposal_smooth_sigma, outer_weight=fv.outer_weight,
        nms_iou=fv.nms_iou)
    export = mode_config.ExportConfig(export_dir=fv.export_dir, export_version=fv.export_version,
                                     checkpoint=fv.checkpoint, overwrite=fv.overwrite)
    plot = config_lib.PlotConfig(**_values(fv, config_lib.PlotConfig))
    detect = mode_config.DetectConfig(**_values(fv, mode_config.DetectConfig, "videos"),
                                      videos=tuple(fv.video))
    extract = (mode_config.ExtractConfig(**_values(fv, mode_config.ExtractConfig))
               if fv.mode == "detect" else mode_config.ExtractConfig())
    return config_lib.Config(**run, data=data, model=model, train=train,
                             localization=localization, evaluation=_eval_config(fv),
                             export=export, convert=convert, plot=plot,
                             study=_study_config(fv), extract=extract, detect=detect)


def _values(fv, cls, *besides):
    """{field: flag value} of the fields of dataclass `cls` but `besides`,
    each read from its flag: the one `cls.FLAGS` names, else its namesake."""
    flag_names = getattr(cls, "FLAGS", {})
    return {f.name: getattr(fv, flag_names.get(f.name, f.name)) for f in dataclasses.fields(cls)
            if f.name not in besides}


def _eval_config(fv):
    thresholds = (tuple(floats(fv.tiou_thresholds, "tiou_thresholds")) if fv.tiou_thresholds
                  else config_lib.DATASET_TIOU_THRESHOLDS.get(
                      fv.dataset, config_lib.THUMOS14_TIOU_THRESHOLDS))
    return config_lib.EvalConfig(
        **_values(fv, config_lib.EvalConfig, "tiou_thresholds", "plot_videos"),
        tiou_thresholds=thresholds, plot_videos=tuple(fv.plot_videos))


def _export_i3d_config(fv, run):
    """--mode=export_i3d's settings: --streams, the I3D weights and clip shape
    (export/i3d.py checks the shape), the export folder and version."""
    export_dir = (mode_config.I3D_EXPORT_DIR if fv["export_dir"].using_default_value
                  else fv.export_dir)
    return config_lib.Config(
        **run, data=config_lib.DataConfig(streams=tuple(fv.streams)),
        extract=mode_config.ExtractConfig(**_values(fv, mode_config.ExtractConfig)),
        export=mode_config.ExportConfig(export_dir=export_dir, export_version=fv.export_version,
                                       overwrite=fv.overwrite))


def _study_config(fv):
    try:
        seeds = tuple(int(s) for s in fv.seeds)
    except ValueError:
        raise UserError(f"--seeds must be integers, got {','.join(fv.seeds)}") from None
    return mode_config.StudyConfig(**_values(fv, mode_config.StudyConfig, "seeds", "variants"),
                                   seeds=seeds, variants=tuple(fv.study_variants))
