"""dgam-tf: weakly-supervised temporal action localization (DGAM, CVPR 2020).

usage: python -m dgam_tf.main --mode=MODE [--flagfile=flags/X.cfg] [flags]

Flags apply in this order: defaults, then --flagfile, then the flags after it.
"""
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


def run(config):
    """Runs --mode with the given flag values."""
    mode = config.mode
    if mode == "eval_detections":   # numpy only: no TensorFlow to import
        from dgam_tf.evaluation import detection
        if not (config.gt_json and config.predictions_json):
            raise UserError("--mode=eval_detections needs --gt_json and --predictions_json")
        detection.run_eval_detections(
            config.gt_json, config.predictions_json, config.subset,
            detection.thresholds_from_flags(config), config.output_metrics_json)
        return
    if mode in ("train", "eval", "visualize", "export"):
        dgam_flags.validate(config)
    import_tensorflow(config.tf_logs)
    if mode in ("eval", "visualize", "export"):
        from dgam_tf.training import train_lib
        train_lib.warn_ignored_model_flags(config)
    if config.debug_numerics:
        import tensorflow as tf
        tf.debugging.enable_check_numerics()
    if mode == "train":
        from dgam_tf.evaluation import evaluate
        from dgam_tf.training import distribute, train_lib
        distribute.split_cpu(config.cpu_devices)
        if config.deterministic:
            import tensorflow as tf
            tf.config.experimental.enable_op_determinism()
        metrics = train_lib.train_and_evaluate(config, evaluate_fn=evaluate.evaluate_split)
        if metrics is not None:
            evaluate.report(metrics, config)
    elif mode == "eval":
        from dgam_tf.evaluation import evaluate
        evaluate.report(evaluate.evaluate_model_dir(config), config)
    elif mode == "synth":
        from dgam_tf.data import synthetic
        if not config.data_dir:
            raise UserError("--mode=synth needs --data_dir (where to write the dataset)")
        info = synthetic.generate(config.data_dir, seed=config.seed, overwrite=config.overwrite,
                                  preset=config.synthetic_preset)
        print(f"Wrote {config.data_dir}: " + ", ".join(
            f"{s} {v['num_videos']} videos" for s, v in info.splits.items()))
    elif mode == "convert":
        from dgam_tf.data import converters
        if not (config.source_format and config.source_dir and config.data_dir):
            raise UserError("--mode=convert needs --source_format, --source_dir and --data_dir")
        info = converters.convert(
            config.source_format, config.source_dir, config.data_dir,
            annotations=config.annotations, class_names=config.class_names,
            allow_pickle=config.allow_pickle,
            feature_dtype=config.feature_dtype, stride=config.stride, fps=config.fps,
            stream=config.streams[0] if len(config.streams) == 1 else None,
            overwrite=config.overwrite)
        print(f"Wrote {config.data_dir}: " + ", ".join(
            f"{s} {v['num_videos']} videos" for s, v in info.splits.items()))
    elif mode == "export":
        from dgam_tf.export import saved_model
        print(f"Exported {saved_model.export_from_flags(config)}")
    elif mode == "visualize":
        from dgam_tf.visualization import plots
        for path in plots.plot_model_dir(config):
            print(path)


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
