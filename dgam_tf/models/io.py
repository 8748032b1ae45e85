"""Building trained models and restoring them: model.json (the serialized
ModelConfig), the checkpoint's layout and which checkpoint to read.

Training, evaluation and export all come here; this module imports none of
them."""
import os

import tensorflow as tf

from dgam_tf import io_utils
from dgam_tf.config import ModelConfig
from dgam_tf.errors import UserError
from dgam_tf.models.dgam import StreamModel

SETTINGS_FILE = "model.json"


def build_models(model, streams=None, initializer="pytorch"):
    """{stream: StreamModel} with all variables created.

    Args:
      model: ModelConfig, with feature_dim and class_names set.
      streams: build only these (default: the config's).
      initializer: "pytorch" or "glorot" (models/layers.py).
    """
    models = {}
    for stream in streams or model.streams:
        models[stream] = StreamModel(model.feature_dim, model.num_classes,
                                     model.attention_hidden, model.cvae_hidden,
                                     model.latent_dim, model.gam, initializer, name=stream)
        models[stream].build_all()
    return models


def make_checkpoint(models, optimizers=None, **counters):
    """One tf.train.Checkpoint naming every model, optimizer and counter."""
    entries = dict(counters)
    for stream, model in models.items():
        entries[stream] = model
    for (stream, part), opt in (optimizers or {}).items():
        entries[f"{stream}_{part}_optimizer"] = opt
    return tf.train.Checkpoint(**entries)


def settings_path(model_dir):
    return os.path.join(model_dir, SETTINGS_FILE)


def read_settings(model_dir, what="model settings (is --model_dir a trained model?)"):
    """The ModelConfig of model_dir's model.json."""
    return ModelConfig.from_json(io_utils.read_json(settings_path(model_dir), what))


def write_settings(model_dir, model):
    """Records the ModelConfig in model_dir; refuses a model_dir that holds
    a different model (resuming it would fail or mix models)."""
    path = settings_path(model_dir)
    settings = model.to_json()
    if io_utils.exists(path):
        old = io_utils.read_json(path, "model settings")
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise UserError(f"--model_dir {model_dir} holds a model trained with "
                            f"other settings ({', '.join(changed)}); use a new --model_dir")
    io_utils.atomic_write_json(path, settings)


def load_models(model_dir, checkpoint="latest", streams=None):
    """Rebuilds and restores trained models.

    Args:
      model_dir: a training folder (model.json + checkpoints/).
      checkpoint: "latest", "best" (best by validation) or a checkpoint path.
      streams: restore only these streams (default: all trained ones).

    Returns:
      ({stream: StreamModel}, ModelConfig of model.json, the checkpoint path
      restored).
    """
    model = read_settings(model_dir)
    path = checkpoint_path(model_dir, checkpoint)
    if streams:
        missing = [s for s in streams if s not in model.streams]
        if missing:
            raise UserError(f"{model_dir} has no {','.join(missing)} stream model")
    models = build_models(model, streams)
    status = make_checkpoint(models).read(path)
    status.assert_existing_objects_matched().expect_partial()
    return models, model, path


def checkpoint_path(model_dir, checkpoint):
    """The path of --checkpoint (latest, best or a path) for model_dir."""
    checkpoints = os.path.join(model_dir, "checkpoints")
    if checkpoint == "latest":
        path = tf.train.latest_checkpoint(checkpoints)
        if not path:
            raise UserError(f"no latest checkpoint in {model_dir}; train first "
                            "(--mode=train) or pass another --checkpoint")
        return path
    if checkpoint == "best":
        path = os.path.join(model_dir, "best", "ckpt")
        if not tf.io.gfile.exists(path + ".index"):
            raise UserError(f"no best checkpoint in {model_dir} (best/ is kept by "
                            "--eval_every on a validation split); pass --checkpoint=latest")
        return path
    if tf.io.gfile.exists(checkpoint + ".index"):
        return checkpoint
    folder = os.path.dirname(checkpoint) or checkpoints
    found = sorted((os.path.basename(p)[:-len(".index")] for p in tf.io.gfile.glob(
        os.path.join(folder, "*.index"))), key=lambda name: (len(name), name))  # ckpt-9, -10
    raise UserError(f"--checkpoint={checkpoint} is not latest, best or a checkpoint path; "
                    + (f"{folder} has {', '.join(found)}" if found else
                       f"{folder} holds no checkpoint"))
