"""Every flag of dgam-tf, defined in one place.

Override order: flag defaults (the built-in synthetic setup), then
`--flagfile=flags/<dataset>.cfg`, then flags given on the command line (absl
applies them left to right, so put `--flagfile` first).

`parse` turns them, once, into the typed settings of dgam_tf/config.py that
library code takes; only main.py (and tests, through `parse_args`) call it.
The flag defaults are those of the config dataclasses (test_config.py).
"""
import dataclasses
import os

from absl import flags

from dgam_tf import config as config_lib
from dgam_tf.config import DEFAULT_CACHE, STREAMS
from dgam_tf.errors import UserError

MODES = ("train", "eval", "eval_detections", "synth", "convert", "export", "visualize")
DATASETS = ("synthetic", "thumos14", "activitynet12")
# Help groups: each starts at its first flag, in define_flags order.
GROUP_STARTS = {"mode": "general", "dataset": "data", "attention_hidden": "model",
                "model_dir": "training", "class_threshold": "localization",
                "tiou_thresholds": "evaluation", "source_format": "data",
                "export_dir": "export"}


def define_flags(fv=flags.FLAGS):
    """Defines all flags on `fv`; every flag is optional."""
    d = dict(flag_values=fv)
    flags.DEFINE_enum("mode", "train", MODES, "What to run.", **d)
    flags.DEFINE_boolean("tf_logs", False, "Show TensorFlow's C++ start-up and log lines "
                         "(hidden by default).", **d)

    # Data.
    flags.DEFINE_enum("dataset", "synthetic", DATASETS,
                      "Evaluation protocol and test-time sampling of this dataset.", **d)
    flags.DEFINE_string("data_dir", None, "Folder of records (dataset.json + shards). "
                        "Unset: the built-in synthetic dataset, generated once into "
                        "--synthetic_cache.", **d)
    flags.DEFINE_enum("synthetic_preset", "basic", ["basic", "realistic"],
                      "Built-in data: basic (easy, D=256, 5 classes, the quick demo) or "
                      "realistic (THUMOS14-like videos with I3D-like features, D=1024, 20 "
                      "classes; use with --flagfile=flags/thumos14.cfg).", **d)
    flags.DEFINE_string("synthetic_cache", os.path.join(DEFAULT_CACHE, "synthetic"),
                        "Where the built-in synthetic dataset is cached.", **d)
    flags.DEFINE_list("streams", list(STREAMS), "Streams to train/evaluate (rgb, flow).", **d)
    flags.DEFINE_integer("feature_dim", None, "Feature size D; unset: read from the records.", **d)
    flags.DEFINE_integer("num_classes", None, "Action classes C; unset: from the records.", **d)
    flags.DEFINE_string("train_split", "train", "Split to train on.", **d)
    flags.DEFINE_string("validation_split", "validation",
                        "Split for model selection (skipped if the data has none).", **d)
    flags.DEFINE_string("test_split", "test", "Split evaluated at the end and by --mode=eval.", **d)
    flags.DEFINE_integer("num_segments", 200, "Segments sampled per training video (n; "
                         "the paper: 400).", **d)
    flags.DEFINE_integer("test_min_segments", config_lib.DataConfig.test_min_segments,
                         "Test sampling n = clip(T, min, max).", **d)
    flags.DEFINE_integer("test_max_segments", config_lib.DataConfig.test_max_segments,
                         "Test sampling n = clip(T, min, max).", **d)
    flags.DEFINE_boolean("skip_bad_records", False, "Read every record first and leave out "
                         "the ones that fail (counted and reported) instead of stopping at "
                         "the first.", **d)
    flags.DEFINE_integer("shuffle_buffer", 0, "Videos held for shuffling: 0 shuffles the whole "
                         "split (a random permutation per stage, as the release draws; holds "
                         "the split's records in memory); N > 0 bounds memory with a local "
                         "shuffle over interleaved shards.", **d)
    flags.DEFINE_integer("batch_reuse_epochs", 1,
                         "Draw batches once per this many epochs and reuse them in both "
                         "stages (the release uses 10; 1 = fresh draw every stage).", **d)
    flags.DEFINE_enum("data_residency", "auto", ["auto", "memory", "stream"],
                      "Training split: memory reads it once into tensors (device memory on "
                      "GPUs) and draws batches in-graph; stream parses the records every "
                      "stage; auto holds it when it takes at most half the available memory "
                      "and --shuffle_buffer=0. Both give the same batches.", **d)

    # Model.
    flags.DEFINE_integer("attention_hidden", 256, "Hidden units of the attention head.", **d)
    flags.DEFINE_integer("cvae_hidden", 128, "Hidden units of the CVAE encoder/decoder.", **d)
    flags.DEFINE_integer("latent_dim", 128, "CVAE latent size.", **d)
    flags.DEFINE_enum("initializer", "pytorch", ["pytorch", "glorot"],
                      "Dense initialisation: pytorch = the release's (weights and biases "
                      "~ U(+-1/sqrt(fan_in))); glorot = Keras' defaults (Glorot-uniform, "
                      "zero bias), which can collapse a stream on real features.", **d)
    flags.DEFINE_boolean("gam", True, "Generative attention modeling; false gives the "
                         "paper's 'w/o GAM' baseline (no CVAE stage, no L_recon).", **d)

    # Training.
    flags.DEFINE_string("model_dir", "runs/synthetic", "Checkpoints, summaries, metrics.", **d)
    flags.DEFINE_integer("epochs", 30, "Training epochs (each: CVAE stage + attention stage).", **d)
    flags.DEFINE_integer("batch_size", 32, "Global batch size (last partial batch dropped).", **d)
    flags.DEFINE_integer("seed", 0, "Seed of initialisation, shuffles and sampling.", **d)
    flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate (both optimizers).", **d)
    flags.DEFINE_float("adam_beta1", 0.8, "Adam beta1.", **d)
    flags.DEFINE_float("adam_beta2", 0.999, "Adam beta2.", **d)
    flags.DEFINE_float("adam_epsilon", 1e-8, "Adam epsilon, added to the bias-corrected "
                       "sqrt(v_hat) as PyTorch (the release) does.", **d)
    flags.DEFINE_list("loss_weights_rgb", ["1", "0.03", "0.1", "0.5"],
                      "rgb model-stage weights of L_fg, L_bg, L_guide, L_recon.", **d)
    flags.DEFINE_list("loss_weights_flow", ["1", "0.03", "0.1", "0.3"],
                      "flow model-stage weights of L_fg, L_bg, L_guide, L_recon.", **d)
    flags.DEFINE_boolean("ramp_recon", True, "Multiply the L_recon weight by r(e).", **d)
    flags.DEFINE_float("cvae_weight", 10.0, "CVAE-stage loss weight (times r(e)).", **d)
    flags.DEFINE_float("beta", 0.1, "KL weight in L_cvae.", **d)
    flags.DEFINE_integer("ramp_epochs", 10, "r(e) = min(e, ramp_epochs) / ramp_epochs (the "
                         "paper: 300 of 6000 epochs).", **d)
    flags.DEFINE_integer("ramp_chunk_epochs", 1, "r(e) steps once per chunk of this many "
                         "epochs, e taken at the chunk's start (the release: 10; 1 = every "
                         "epoch).", **d)
    flags.DEFINE_integer("eval_every", 10, "Evaluate on the validation split every N epochs "
                         "and keep the best checkpoint (0: never).", **d)
    flags.DEFINE_integer("keep_checkpoints", 3, "Latest checkpoints kept.", **d)
    flags.DEFINE_boolean("deterministic", False, "TF op determinism: reruns and resumed runs end "
                         "bit-identical on the same machine.", **d)
    flags.DEFINE_boolean("jit_compile", False, "Compile the training steps with XLA.", **d)
    flags.DEFINE_enum("mixed_precision", None, ["mixed_float16", "mixed_bfloat16"],
                      "Keras mixed-precision policy (losses stay float32).", **d)
    flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy; multi_worker reads TF_CONFIG.", **d)
    flags.DEFINE_integer("cpu_devices", 0, "Split the CPU into this many logical devices "
                         "(for --strategy=mirrored without GPUs; 0: no split).", **d)
    flags.DEFINE_list("profile_steps", [], "START,END global steps to profile.", **d)
    flags.DEFINE_boolean("debug_numerics", False, "Enable TF's op-level NaN/Inf checks.", **d)
    flags.DEFINE_boolean("progress", True, "Show a progress bar per epoch.", **d)

    # Localization (algorithm.md §5; THUMOS14 defaults).
    flags.DEFINE_float("class_threshold", 0.1, "Classes with p_c above this are localized.", **d)
    flags.DEFINE_list("fusion_alpha", ["0.35", "0.65"], "alpha per stream (rgb, flow).", **d)
    flags.DEFINE_list("proposal_threshold", ["0.03", "0.08"],
                      "Threshold on 0.8u+0.2*lambda^2 per stream (rgb, flow).", **d)
    flags.DEFINE_float("proposal_smooth_sigma", 0.0,
                       "Gaussian sigma before thresholding (ActivityNet: 25).", **d)
    flags.DEFINE_float("outer_weight", 0.3, "Outer-inner contrast weight of the score.", **d)
    flags.DEFINE_float("nms_iou", 0.5, "1-D NMS IoU threshold for two-stream fusion.", **d)

    # Evaluation and analysis.
    flags.DEFINE_list("tiou_thresholds", None, "tIoU thresholds; unset: the dataset's.", **d)
    flags.DEFINE_string("gt_json", None, "Ground truth (ActivityNet JSON) for eval_detections.", **d)
    flags.DEFINE_string("predictions_json", None, "Detections (ActivityNet result JSON).", **d)
    flags.DEFINE_string("subset", "test", "Ground-truth subset for eval_detections.", **d)
    flags.DEFINE_string("output_metrics_json", None, "Where to write metrics "
                        "(default <model_dir>/metrics.json).", **d)
    flags.DEFINE_string("checkpoint", "latest", "Checkpoint evaluated/exported: latest, "
                        "best (best by validation) or a checkpoint path.", **d)
    flags.DEFINE_string("attention_checkpoint", None, "Module swap (paper §7): take "
                        "attention from the model in this folder (its --checkpoint).", **d)
    flags.DEFINE_string("classifier_checkpoint", None, "Module swap: take the classifier "
                        "from the model in this folder (its --checkpoint).", **d)
    flags.DEFINE_float("attention_high", 0.5, "Frame-set statistics: 'high attention' threshold.", **d)
    flags.DEFINE_float("cls_high", 0.5, "Frame-set statistics: 'high classification' threshold "
                       "on sigmoid(T-CAM) of the labelled class.", **d)
    flags.DEFINE_integer("num_plots", 4, "Videos drawn by --mode=visualize / eval summaries.", **d)
    flags.DEFINE_list("plot_videos", [], "--mode=visualize: draw these video ids of "
                      "--test_split instead of the first --num_plots.", **d)

    # Synthetic data and converters.
    flags.DEFINE_string("source_format", None, "Converter input layout: dgam, wtalc, npy_dir.", **d)
    flags.DEFINE_string("source_dir", None, "Converter input folder.", **d)
    flags.DEFINE_string("annotations", None, "Annotation JSON (dgam: gt.json, default the "
                        "only test_data/gt*.json; npy_dir: required).", **d)
    flags.DEFINE_string("class_names", None, "Converter class order: a text file, one name "
                        "per line (default: sorted ground-truth labels).", **d)
    flags.DEFINE_boolean("allow_pickle", False, "Let the wtalc converter unpickle features "
                         "(unpickling runs code from the file: only for trusted files).", **d)
    flags.DEFINE_enum("feature_dtype", "float16", ["float16", "float32"],
                      "How features are stored in the records.", **d)
    flags.DEFINE_integer("stride", 16, "Converters: frames per feature segment.", **d)
    flags.DEFINE_float("fps", 25.0, "Converters: frame rate; seconds per segment = "
                       "stride / fps (npy_dir: the annotation's fps wins).", **d)
    flags.DEFINE_boolean("overwrite", False, "Replace an existing output folder/version.", **d)

    # Export.
    flags.DEFINE_string("export_dir", "savedmodel/dgam", "SavedModel base folder; versions "
                        "are written to numbered subfolders.", **d)
    flags.DEFINE_integer("export_version", None, "Version number (default: latest + 1).", **d)


def make_config(argv=(), **overrides):
    """Returns fresh flag values: defaults, then `argv` flags, then `overrides`."""
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["dgam_tf"] + list(argv))
    for name, value in overrides.items():
        setattr(fv, name, value)
    return fv


def parse_args(argv=(), **overrides):
    """`parse` of `make_config(argv, **overrides)`: a Config without global FLAGS."""
    return parse(make_config(argv, **overrides))


def flag_groups(fv=flags.FLAGS):
    """{group: [Flag]} of every flag defined by define_flags, in its order."""
    groups, group = {}, None
    for flag in fv.get_flags_for_module(__name__):
        group = GROUP_STARTS.get(flag.name, group)
        groups.setdefault(group, []).append(flag)
    return groups


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


def _validate(fv):
    """Refuses impossible settings before any work starts (one clear line)."""
    unknown = [s for s in fv.streams if s not in STREAMS]
    if unknown or not fv.streams:
        raise UserError(f"--streams must be a non-empty subset of rgb,flow, got "
                        f"{','.join(fv.streams)}")
    if len(set(fv.streams)) != len(fv.streams):
        raise UserError("--streams lists a stream twice")
    positive = ["num_segments", "batch_size", "epochs", "test_min_segments",
                "test_max_segments", "batch_reuse_epochs", "ramp_chunk_epochs",
                "attention_hidden", "cvae_hidden", "latent_dim", "ramp_epochs",
                "keep_checkpoints"]
    for name in positive:
        if getattr(fv, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(fv, name)}")
    for name in ("feature_dim", "num_classes"):
        if getattr(fv, name) is not None and getattr(fv, name) < 1:
            raise UserError(f"--{name} must be at least 1, got {getattr(fv, name)}")
    if fv.test_min_segments > fv.test_max_segments:
        raise UserError("--test_min_segments exceeds --test_max_segments")
    for name in ("eval_every", "num_plots", "cpu_devices", "shuffle_buffer"):
        if getattr(fv, name) < 0:
            raise UserError(f"--{name} must not be negative, got {getattr(fv, name)}")
    if not fv.learning_rate > 0:
        raise UserError("--learning_rate must be positive")
    if not fv.adam_epsilon > 0:
        raise UserError(f"--adam_epsilon must be positive, got {fv.adam_epsilon}")


def parse(fv=flags.FLAGS):
    """The typed settings of parsed flag values, validated once.

    List flags become numbers here (a malformed one is a UserError naming
    it); unset --tiou_thresholds become the --dataset's. A mode gets the
    parts it uses (the others keep their defaults): eval_detections the
    evaluation, synth and convert the data and conversion, the rest all,
    checked first."""
    run = dict(mode=fv.mode, model_dir=fv.model_dir, tf_logs=fv.tf_logs)
    if fv.mode == "eval_detections":
        return config_lib.Config(**run, evaluation=_eval_config(fv))
    streams = tuple(fv.streams)
    data = config_lib.DataConfig(**_values(fv, config_lib.DataConfig, "streams"),
                                 streams=streams)
    convert = config_lib.ConvertConfig(**_values(fv, config_lib.ConvertConfig))
    if fv.mode in ("synth", "convert"):
        return config_lib.Config(**run, data=data, convert=convert)
    _validate(fv)
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
    export = config_lib.ExportConfig(export_dir=fv.export_dir, version=fv.export_version,
                                     checkpoint=fv.checkpoint, overwrite=fv.overwrite)
    return config_lib.Config(**run, data=data, model=model, train=train,
                             localization=localization, evaluation=_eval_config(fv),
                             export=export, convert=convert)


def _values(fv, cls, *besides):
    """{field: flag value} of the fields of dataclass `cls` but `besides`
    (each named like its flag)."""
    return {f.name: getattr(fv, f.name) for f in dataclasses.fields(cls)
            if f.name not in besides}


def _eval_config(fv):
    thresholds = (tuple(floats(fv.tiou_thresholds, "tiou_thresholds")) if fv.tiou_thresholds
                  else config_lib.DATASET_TIOU_THRESHOLDS.get(
                      fv.dataset, config_lib.THUMOS14_TIOU_THRESHOLDS))
    return config_lib.EvalConfig(
        **_values(fv, config_lib.EvalConfig, "tiou_thresholds", "plot_videos"),
        tiou_thresholds=thresholds, plot_videos=tuple(fv.plot_videos))
