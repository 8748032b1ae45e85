"""Entry point: `python -m dgam_tf.main --mode=MODE [--flagfile=flags/X.cfg] ...`.

Thin on purpose: it parses flags and dispatches on --mode. A mistake of the
user's (UserError) is printed as one line, with exit status 1.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Before TensorFlow loads.


def _import_tensorflow_quietly():
    """Imports TF and TFP with C++ start-up chatter (printed before logging
    is configured, so TF_CPP_MIN_LOG_LEVEL cannot hide it) sent to /dev/null.
    Python exceptions still surface after stderr is restored."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow  # noqa: F401
        import tensorflow_probability  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_import_tensorflow_quietly()

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from dgam_tf import flags as dgam_flags  # noqa: E402
from dgam_tf.errors import UserError  # noqa: E402

dgam_flags.define_flags()
FLAGS = flags.FLAGS


def run(config):
    """Runs --mode with the given flag values."""
    mode = config.mode
    if mode in ("train", "eval", "visualize", "export"):
        dgam_flags.validate(config)
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
            evaluate.report(metrics, config, config.test_split)
    elif mode == "eval":
        from dgam_tf.evaluation import evaluate
        evaluate.report(evaluate.evaluate_model_dir(config), config, config.test_split)
    elif mode == "eval_detections":
        from dgam_tf.evaluation import detection
        if not (config.gt_json and config.predictions_json):
            raise UserError("--mode=eval_detections needs --gt_json and --predictions_json")
        detection.run_eval_detections(
            config.gt_json, config.predictions_json, config.subset,
            dgam_flags.floats(config.tiou_thresholds, "tiou_thresholds")
            if config.tiou_thresholds else None, config.output_metrics_json)
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
        print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr)
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
    app.run(main)


if __name__ == "__main__":
    console_script()
