"""Building trained models and restoring them: model.json (the serialized
ModelConfig), the checkpoint's layout and which checkpoint to read.

Training, evaluation and export all come here; this module imports none of
them."""
import os

import tensorflow as tf

from dgam_tf import files
from dgam_tf.config import ModelConfig
from dgam_tf.errors import UserError
from dgam_tf.models.dgam import StreamModel

SETTINGS_FILE = "model.json"
# What features the model was trained on, when known (DatasetInfo.features).
FEATURES_FILE = "features.json"


def build_models(model_cfg, streams=None, initializer="pytorch"):
    """{stream: StreamModel} with all variables created.

    Args:
      model_cfg: ModelConfig, with feature_dim and class_names set.
      streams: build only these (default: the config's).
      initializer: "pytorch" or "glorot" (models/layers.py).
    """
    models = {}
    for stream in streams or model_cfg.streams:
        models[stream] = StreamModel(model_cfg.feature_dim, model_cfg.num_classes,
                                     model_cfg.attention_hidden, model_cfg.cvae_hidden,
                                     model_cfg.latent_dim, model_cfg.gam, initializer,
                                     name=stream)
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
    return ModelConfig.from_json(files.read_json(settings_path(model_dir), what))


def write_settings(model_dir, model_cfg):
    """Records the ModelConfig in model_dir; refuses a model_dir that holds
    a different model (resuming it would fail or mix models)."""
    path = settings_path(model_dir)
    settings = model_cfg.to_json()
    if files.exists(path):
        old = files.read_json(path, "model settings")
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise UserError(f"--model_dir {model_dir} holds a model trained with "
                            f"other settings ({', '.join(changed)}); use a new --model_dir")
    files.atomic_write_json(path, settings)


def write_features(model_dir, features):
    """Records the provenance of the training features (a dataset.json's
    "features", or None: unknown) in model_dir, once: a resumed run keeps
    the first record."""
    path = os.path.join(model_dir, FEATURES_FILE)
    if features is not None and not files.exists(path):
        files.atomic_write_json(path, features)


def read_features(model_dir):
    """The provenance write_features recorded, or None when unknown."""
    path = os.path.join(model_dir, FEATURES_FILE)
    if not files.exists(path):
        return None
    record = files.read_json(path, "feature provenance")
    if not isinstance(record, dict):
        raise UserError(f"{path}: feature provenance is not a JSON object")
    return record


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
        path = latest_in(checkpoints)
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
    if tf.io.gfile.isdir(checkpoint):   # a folder (a model dir, its checkpoints/): its latest
        searched = (checkpoint, os.path.join(checkpoint, "checkpoints"))
        for folder in searched:
            path = latest_in(folder)
            if path:
                return path
        raise UserError(f"--checkpoint={checkpoint}: no checkpoint in {searched[0]} nor "
                        f"in {searched[1]}")
    folder = os.path.dirname(checkpoint) or checkpoints
    found = checkpoint_names(folder)
    raise UserError(f"--checkpoint={checkpoint} is not latest, best, a checkpoint path or a "
                    "folder of checkpoints; " + (f"{folder} has {', '.join(found)}" if found
                                                 else f"no checkpoint in {folder}"))


def latest_in(folder):
    """The latest checkpoint of `folder` by TF's state file, else the
    highest-numbered one there (a folder copied without that file), or None."""
    latest = tf.train.latest_checkpoint(folder)
    if latest:
        return latest
    names = checkpoint_names(folder)       # listed only without the state file
    return os.path.join(folder, names[-1]) if names else None


def checkpoint_names(folder):
    """The checkpoints in `folder` by name, oldest first (ckpt-9 before ckpt-10)."""
    return sorted((os.path.basename(p)[:-len(".index")] for p in tf.io.gfile.glob(
        os.path.join(folder, "*.index"))), key=lambda name: (len(name), name))


def load_modules(model_dir, checkpoint="latest", streams=None, attention_dir=None,
                 classifier_dir=None):
    """Restores (attention, classifier) per stream, optionally swapping modules
    between trained models (the paper's O/N analysis, §7): the attention of
    `attention_dir` with the classifier of `classifier_dir` (each defaults to
    model_dir).

    Returns:
      ({stream: (attention, classifier)}, the attention model's ModelConfig,
      checkpoint: the restored path, or {"attention": path, "classifier":
      path} for a swap).

    Raises:
      UserError: no such model or checkpoint, or two models trained on
        other classes.
    """
    attention_dir = attention_dir or model_dir
    classifier_dir = classifier_dir or model_dir
    loaded = {}
    for folder in dict.fromkeys((attention_dir, classifier_dir)):
        loaded[folder] = load_models(folder, checkpoint, streams)
    (attention_models, model_cfg, attention_path) = loaded[attention_dir]
    (classifier_models, classifier_cfg, classifier_path) = loaded[classifier_dir]
    if classifier_cfg.class_names != model_cfg.class_names:
        raise UserError(f"the model in {classifier_dir} was trained on other classes "
                        f"than the model in {attention_dir}")
    modules = {s: (attention_models[s].attention, classifier_models[s].classifier)
               for s in streams or model_cfg.streams}
    if attention_dir == classifier_dir:
        return modules, model_cfg, files.abspath(attention_path)
    return modules, model_cfg, {"attention": files.abspath(attention_path),
                                "classifier": files.abspath(classifier_path)}


def model_flag_mismatches(model_dirs, given):
    """Model settings given by the user that differ from model.json.

    Args:
      model_dirs: the trained model folders a mode restores.
      given: {setting: value} the user set explicitly (ModelConfig fields).

    Returns:
      [(model_dir, setting, given value, the model's value)]; folders without
      model.json are left to the restore to report.
    """
    found = []
    for folder in dict.fromkeys(model_dirs):
        if not files.exists(settings_path(folder)):
            continue
        settings = files.read_json(settings_path(folder), "model settings")
        found += [(folder, name, value, settings[name]) for name, value in given.items()
                  if name in settings and value != settings[name]]
    return found
