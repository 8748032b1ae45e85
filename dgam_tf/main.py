"""dgam-tf: weakly-supervised temporal action localization (DGAM, CVPR 2020).

usage: python -m dgam_tf.main --mode=MODE [--flagfile=flags/X.cfg] [flags]

Flags apply in this order: defaults, then --flagfile, then the flags after it.
"""
import functools
import os
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging

from dgam_tf import flags as dgam_flags
from dgam_tf.errors import UserError

dgam_flags.define_flags()
FLAGS = flags.FLAGS
# Flags that define a trained model; eval, export and visualize rebuild it
# from its model.json instead.
MODEL_FLAGS = ("attention_hidden", "cvae_hidden", "latent_dim", "gam")
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
MODE_HELP = {
    "train": "train (resuming from --model_dir), then evaluate --test_split",
    "eval": "evaluate a trained --model_dir (--checkpoint=latest|best|PATH)",
    "eval_detections": "score --predictions_json against --gt_json (ActivityNet JSON)",
    "visualize": "plot attention, T-CAM and detections to <model_dir>/plots/",
    "export": "write a SavedModel for TF Serving to --export_dir",
    "convert": "turn a public feature release into records (--source_format)",
    "synth": "write the synthetic dataset to --data_dir",
}


def _flag_line(flag):
    """`--name=default` as a user types it (booleans as --[no]name)."""
    if flag.boolean:
        return f"--[no]{flag.name} (default: {flag.default_as_str.strip(chr(39))})"
    return f"--{flag.name}" + ("" if flag.default is None else
                               "=" + flag.default_as_str.strip("'"))


def usage():
    """The --help text: modes, then this program's flags by group."""
    lines = [__doc__.strip(), "", "modes:"]
    lines += [f"  {mode:<16} {text}" for mode, text in MODE_HELP.items()]
    for group, group_flags in dgam_flags.flag_groups(FLAGS).items():
        lines += ["", f"{group} flags:"]
        for flag in group_flags:
            lines += [f"  {_flag_line(flag)}", textwrap.fill(
                flag.help, 79, initial_indent=" " * 6, subsequent_indent=" " * 6)]
    lines += ["", "--helpfull also lists absl's own flags."]
    return "\n".join(lines)


def parse_flags(argv):
    """Parses argv into FLAGS; --help prints `usage`, a bad flag one error line."""
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(usage())
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        sys.exit(1)


def import_tensorflow(show_logs=False):
    """Imports TF and TFP and finds the devices with TF's C++ start-up lines
    (printed before logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot
    hide them) sent to /dev/null, and TF's C++ log lines (even ERROR ones
    such as oneDNN's float16 notice: TF's errors reach Python as exceptions)
    hidden, unless `show_logs`. Python exceptions still surface after stderr
    is restored."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if show_logs else "3")
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    if not show_logs:
        os.dup2(devnull, 2)
    try:
        import tensorflow as tf
        import tensorflow_probability  # noqa: F401
        tf.config.list_physical_devices()   # cuInit and friends log here
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warn_ignored_model_flags(fv, cfg):
    """Warns (one stderr line each) about model flags set by the user that
    differ from the model.json of the model folders eval, export and
    visualize restore: those modes rebuild the model from model.json."""
    from dgam_tf import io_utils
    from dgam_tf.models import io as model_io
    ev = cfg.evaluation
    for model_dir in dict.fromkeys((ev.attention_checkpoint or cfg.model_dir,
                                    ev.classifier_checkpoint or cfg.model_dir)):
        path = model_io.settings_path(model_dir)
        if not io_utils.exists(path):
            continue                    # restoring it says what is missing
        settings = io_utils.read_json(path, "model settings")
        for name in MODEL_FLAGS:
            value = getattr(fv, name)
            if not fv[name].using_default_value and name in settings and value != settings[name]:
                print(f"warning: --{name}={str(value).lower()} is ignored: the model in "
                      f"{model_dir} has {name}={str(settings[name]).lower()}",
                      file=sys.stderr)


def run(fv):
    """Runs --mode with the given flag values (parsed here, once)."""
    cfg = dgam_flags.parse(fv)
    mode, ev = cfg.mode, cfg.evaluation
    if mode == "eval_detections":   # numpy only: no TensorFlow to import
        from dgam_tf.evaluation import detection
        if not (ev.gt_json and ev.predictions_json):
            raise UserError("--mode=eval_detections needs --gt_json and --predictions_json")
        detection.run_eval_detections(ev.gt_json, ev.predictions_json, ev.subset,
                                      ev.tiou_thresholds, ev.output_metrics_json)
        return
    import_tensorflow(cfg.tf_logs)
    if mode in ("eval", "visualize", "export"):
        warn_ignored_model_flags(fv, cfg)
    if cfg.train.debug_numerics:
        import tensorflow as tf
        tf.debugging.enable_check_numerics()
    if mode == "train":
        train(cfg)
    elif mode == "eval":
        from dgam_tf.evaluation import evaluate
        evaluate.report(evaluate.evaluate_model_dir(cfg.model_dir, cfg.data, cfg.localization,
                                                    ev), cfg.model_dir, ev)
    elif mode == "synth":
        from dgam_tf.data import builtin
        if not cfg.data.data_dir:
            raise UserError("--mode=synth needs --data_dir (where to write the dataset)")
        info = builtin.generate(cfg.data.data_dir, seed=cfg.data.seed,
                                  overwrite=cfg.convert.overwrite,
                                  preset=cfg.data.synthetic_preset)
        print(f"Wrote {cfg.data.data_dir}: " + ", ".join(
            f"{s} {v['num_videos']} videos" for s, v in info.splits.items()))
    elif mode == "convert":
        from dgam_tf.data import converters
        conv, data = cfg.convert, cfg.data
        if not (conv.source_format and conv.source_dir and data.data_dir):
            raise UserError("--mode=convert needs --source_format, --source_dir and --data_dir")
        info = converters.convert(
            conv.source_format, conv.source_dir, data.data_dir,
            annotations=conv.annotations, class_names=conv.class_names,
            allow_pickle=conv.allow_pickle,
            feature_dtype=conv.feature_dtype, stride=conv.stride, fps=conv.fps,
            stream=data.streams[0] if len(data.streams) == 1 else None,
            overwrite=conv.overwrite)
        print(f"Wrote {data.data_dir}: " + ", ".join(
            f"{s} {v['num_videos']} videos" for s, v in info.splits.items()))
    elif mode == "export":
        from dgam_tf.export import saved_model
        ex = cfg.export
        print("Exported " + saved_model.export(
            cfg.model_dir, ex.export_dir, version=ex.version, overwrite=ex.overwrite,
            checkpoint=ex.checkpoint, localization_config=cfg.localization,
            test_min_segments=cfg.data.test_min_segments,
            test_max_segments=cfg.data.test_max_segments))
    elif mode == "visualize":
        from dgam_tf.visualization import plots
        for path in plots.plot_model_dir(cfg.model_dir, cfg.data, cfg.localization, ev):
            print(path)


def train(cfg):
    """--mode=train: trains, validating every --eval_every epochs (with
    summary images), then evaluates --test_split and reports it."""
    import tensorflow as tf
    from dgam_tf.evaluation import evaluate
    from dgam_tf.training import distribute, train_lib
    from dgam_tf.visualization import plots
    distribute.split_cpu(cfg.train.cpu_devices)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    metrics = train_lib.train_and_evaluate(
        cfg.model_dir, cfg.data, cfg.model, cfg.train,
        evaluate_fn=functools.partial(evaluate.evaluate_split, data=cfg.data,
                                      localization=cfg.localization,
                                      evaluation=cfg.evaluation),
        draw_fn=functools.partial(plots.video_image,
                                  class_threshold=cfg.localization.class_threshold))
    if metrics is not None:
        evaluate.report(metrics, cfg.model_dir, cfg.evaluation)


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        print(f"error: unexpected arguments {' '.join(argv[1:])} (see --help)",
              file=sys.stderr)
        sys.exit(2)
    try:
        run(FLAGS)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept", file=sys.stderr)
        sys.exit(130)


def console_script():
    """The `dgam-tf` command (setup.py's entry point), as `python -m dgam_tf.main`."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    console_script()
