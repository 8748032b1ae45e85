"""Importing TensorFlow quietly, for the command lines (dgam_tf.main and the
serving client)."""
import os


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
