"""dgam-tf: weakly-supervised temporal action localization (DGAM, CVPR 2020).

usage: python -m dgam_tf.main --mode=MODE [--flagfile=flags/X.cfg] [flags]

Flags apply in this order: defaults, then --flagfile, then the flags after it.
"""
import importlib
import os
import sys

from absl import app
from absl import flags
from absl import logging

from dgam_tf import flags as dgam_flags
from dgam_tf.errors import UserError

dgam_flags.define_flags()
FLAGS = flags.FLAGS
HELP_ARGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")
# Each mode's runner, `run(cfg)`, in the package it belongs to.
RUNNERS = {
    "train": "dgam_tf.training.train_lib",
    "eval": "dgam_tf.evaluation.evaluate",
    "eval_detections": "dgam_tf.evaluation.detection",
    "visualize": "dgam_tf.visualization.plots",
    "export": "dgam_tf.export.saved_model",
    "convert": "dgam_tf.data.converters",
    "synth": "dgam_tf.data.builtin",
    "extract": "dgam_tf.features.extract",
    "detect": "dgam_tf.detect.detect",
}
NO_TENSORFLOW = ("eval_detections",)       # numpy only
RESTORING = ("eval", "visualize", "export", "detect")  # rebuild the model from model.json
# What an interrupted mode leaves (every file is written whole, or not at all).
INTERRUPTED = {"train": "interrupted; the last checkpoint is kept",
               "visualize": "interrupted; the plots already written are kept",
               "extract": "interrupted; finished videos are kept in <data_dir>.work, "
                          "the same command continues",
               "detect": "interrupted; the detections of the videos finished, if any, are written"}


def parse_flags(argv):
    """Parses argv into FLAGS; --help prints the usage, a bad flag one error line."""
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(dgam_flags.usage(__doc__.strip()))
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e} (see --help)", file=sys.stderr)
        sys.exit(1)


def import_tensorflow(show_logs=False):
    """Imports TF and TFP and finds the devices with TF's C++ start-up lines
    (printed before logging is configured, so TF_CPP_MIN_LOG_LEVEL cannot
    hide them) sent to /dev/null, and TF's C++ log lines hidden, unless
    `show_logs`. TF's errors still reach Python as exceptions."""
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
    """One stderr line per model flag the user set that the restored model's
    model.json contradicts (those modes rebuild the model from it)."""
    from dgam_tf.models import model_dir as model_dir_lib
    ev = cfg.evaluation
    folders = (ev.attention_checkpoint or cfg.model_dir, ev.classifier_checkpoint or cfg.model_dir)
    for folder, name, value, trained in model_dir_lib.model_flag_mismatches(
            folders, dgam_flags.given_model_settings(fv)):
        print(f"warning: --{name}={str(value).lower()} is ignored: the model in {folder} has "
              f"{name}={str(trained).lower()}", file=sys.stderr)


def run(fv):
    """Runs --mode with the given flag values (parsed here, once)."""
    cfg = dgam_flags.parse(fv)
    if cfg.mode not in NO_TENSORFLOW:
        import_tensorflow(cfg.tf_logs)
        if cfg.train.debug_numerics:
            import tensorflow as tf
            tf.debugging.enable_check_numerics()
    if cfg.mode in RESTORING:
        warn_ignored_model_flags(fv, cfg)
    importlib.import_module(RUNNERS[cfg.mode]).run(cfg)


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
        print(INTERRUPTED.get(FLAGS.mode, "interrupted; nothing was written"), file=sys.stderr)
        sys.exit(130)


def console_script():
    """The `dgam-tf` command (setup.py's entry point), as `python -m dgam_tf.main`."""
    app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
    console_script()
