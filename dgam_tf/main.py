"""dgam-tf: weakly-supervised temporal action localization (DGAM, CVPR 2020).

usage: python -m dgam_tf.main --mode=MODE [--flagfile=flags/X.cfg] [flags]

Flags apply in this order: defaults, then --flagfile, then the flags after it.
"""
import importlib
import re
import sys

from absl import app
from absl import flags
from absl import logging

from dgam_tf import files, flag_parsing
from dgam_tf import flags as dgam_flags
from dgam_tf.errors import UserError
from dgam_tf.tf_setup import import_tensorflow

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
    "export_i3d": "dgam_tf.export.i3d",
    "study": "dgam_tf.study.runner",
    "detect": "dgam_tf.detect.detect",
}
NO_TENSORFLOW = ("eval_detections",)       # numpy only
RESTORING = ("eval", "visualize", "export", "detect")  # rebuild the model from model.json
# What an interrupted mode leaves (every file is written whole, or not at all).
INTERRUPTED = {
    "train": "interrupted; the last checkpoint is kept, and the same command resumes from it",
    "eval": "interrupted; no metrics or detections were written (earlier ones are kept)",
    "eval_detections": "interrupted; no metrics were written",
    "visualize": "interrupted; the plots already written are kept",
    "export": "interrupted; no SavedModel version was written",
    "convert": "interrupted; no dataset was written (--data_dir appears only when complete)",
    "synth": "interrupted; no dataset was written (--data_dir appears only when complete)",
    "extract": "interrupted; finished videos are kept in <data_dir>.work, and the same "
               "command continues",
    "study": "interrupted; finished runs and the last checkpoints are kept, and the same "
             "command resumes",
    "detect": "interrupted; the detections of the videos finished, if any, are written",
}


def parse_flags(argv):
    """Parses argv into FLAGS; --help prints the usage, a bad flag one error line."""
    if any(arg in HELP_ARGS for arg in argv[1:]):
        print(dgam_flags.usage(__doc__.strip()))
        sys.exit(0)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        message = re.sub(r"^ERROR:+\s*", "", str(e))   # absl's flagfile errors carry a prefix
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(1)


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


def flag_urls(fv):
    """[(flag name, URL)] of the flags holding a path with a scheme."""
    return [(flag.name, value) for flag in fv.get_flags_for_module(dgam_flags.__name__)
            for value in (flag.value if isinstance(flag.value, list) else [flag.value])
            if isinstance(value, str) and files.is_remote(value)]


def run(fv):
    """Runs --mode with the given flag values (parsed here, once)."""
    cfg = flag_parsing.parse(fv)
    urls = flag_urls(fv)
    if cfg.mode not in NO_TENSORFLOW or urls:   # eval_detections: TF only for URLs
        import_tensorflow(cfg.tf_logs)
    for name, url in urls:   # a scheme TF has no filesystem for: one line, before any work
        files.check_scheme(url, name)
    if cfg.mode not in NO_TENSORFLOW and cfg.train.debug_numerics:
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
