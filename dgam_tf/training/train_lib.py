"""train_and_evaluate and what it needs around the loop: resolving the data,
checking the flags against it, recording the model's settings, restoring
trained models for evaluation and export."""
import os
import sys

import tensorflow as tf

from dgam_tf import flags as dgam_flags
from dgam_tf import io_utils
from dgam_tf.data import records, synthetic
from dgam_tf.errors import UserError
from dgam_tf.training import trainer as trainer_lib

SETTINGS_FILE = "model.json"
# Bump when the synthetic generator changes, so caches are regenerated.
SYNTHETIC_VERSION = 4
# Flags that define the trained model; eval and export rebuild it from these.
MODEL_FLAGS = ("streams", "attention_hidden", "cvae_hidden", "latent_dim", "gam")


def resolve_data(config):
    """(data_dir, DatasetInfo): --data_dir, or the built-in synthetic data,
    generated on first use; checks --feature_dim/--num_classes/--streams and,
    with --skip_bad_records, finds the bad records to leave out."""
    data_dir = config.data_dir
    if not data_dir:
        preset = config.synthetic_preset
        data_dir = os.path.join(config.synthetic_cache, f"v{SYNTHETIC_VERSION}" if preset ==
                                "basic" else f"{preset}-v{SYNTHETIC_VERSION}")
        if not io_utils.exists(os.path.join(data_dir, records.METADATA_FILE)):
            print(f"Generating the built-in synthetic dataset ({preset}) in {data_dir} "
                  "(once)...")
            synthetic.generate(data_dir, preset=preset, overwrite=True)
    info = records.load_info(data_dir)
    if config.skip_bad_records:
        info = records.skip_bad_records(data_dir, info)
    if config.feature_dim is not None and config.feature_dim != info.feature_dim:
        raise UserError(f"--feature_dim={config.feature_dim} but the records in "
                        f"{data_dir} have feature size {info.feature_dim}")
    if config.num_classes is not None and config.num_classes != info.num_classes:
        raise UserError(f"--num_classes={config.num_classes} but {data_dir} has "
                        f"{info.num_classes} classes")
    missing = [s for s in config.streams if s not in info.streams]
    if missing:
        raise UserError(f"--streams asks for {','.join(missing)} but {data_dir} only "
                        f"has {','.join(info.streams)}")
    return data_dir, info


def model_settings(config, info):
    """What eval/export need to rebuild the trained models."""
    settings = {name: getattr(config, name) for name in MODEL_FLAGS}
    settings.update(feature_dim=info.feature_dim, class_names=info.class_names,
                    dataset=config.dataset)
    return settings


def write_settings(config, info):
    """Records the model's settings in model_dir; refuses a model_dir that
    holds a different model (resuming it would fail or mix models)."""
    path = os.path.join(config.model_dir, SETTINGS_FILE)
    settings = model_settings(config, info)
    if io_utils.exists(path):
        old = io_utils.read_json(path, "model settings")
        changed = sorted(k for k in settings if old.get(k) != settings[k])
        if changed:
            raise UserError(f"--model_dir {config.model_dir} holds a model trained with "
                            f"other settings ({', '.join(changed)}); use a new --model_dir")
    io_utils.atomic_write_json(path, settings)


def train_and_evaluate(config, evaluate_fn=None):
    """Trains (resuming from model_dir) and evaluates the test split.

    Args:
      config: flags.
      evaluate_fn: callable(models, data_dir, info, split, config,
        checkpoint=path evaluated) -> metrics, or None to skip evaluation.

    Returns:
      The test metrics (None without evaluate_fn).
    """
    dgam_flags.validate(config)
    data_dir, info = resolve_data(config)
    with io_utils.model_dir_lock(config.model_dir,
                                 multi_worker=config.strategy == "multi_worker"):
        write_settings(config, info)
        split_eval = evaluate_fn and (
            lambda models, split: evaluate_fn(models, data_dir, info, split, config))
        trainer = trainer_lib.Trainer(config, data_dir, info, evaluate_fn=split_eval)
        trainer.train()
        if evaluate_fn is None or not trainer.chief:
            return None
        return evaluate_fn(trainer.models, data_dir, info, config.test_split, config,
                           checkpoint=io_utils.abspath(trainer.manager.latest_checkpoint))


def load_models(model_dir, checkpoint="latest", streams=None):
    """Rebuilds and restores trained models.

    Args:
      model_dir: a training folder (model.json + checkpoints/).
      checkpoint: "latest", "best" (best by validation) or a checkpoint path.
      streams: restore only these streams (default: all trained ones).

    Returns:
      ({stream: StreamModel}, settings dict: model.json's, plus "checkpoint",
      the path restored).
    """
    settings = io_utils.read_json(os.path.join(model_dir, SETTINGS_FILE),
                                  "model settings (is --model_dir a trained model?)")
    path = _checkpoint_path(model_dir, checkpoint)
    config = dgam_flags.make_config(**{k: settings[k] for k in MODEL_FLAGS})
    if streams:
        missing = [s for s in streams if s not in settings["streams"]]
        if missing:
            raise UserError(f"{model_dir} has no {','.join(missing)} stream model")
        config.streams = list(streams)
    models = trainer_lib.build_models(config, settings["feature_dim"],
                                      len(settings["class_names"]))
    status = trainer_lib.make_checkpoint(models).read(path)
    status.assert_existing_objects_matched().expect_partial()
    return models, dict(settings, checkpoint=path)


def _checkpoint_path(model_dir, checkpoint):
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


def warn_ignored_model_flags(config):
    """Warns (one stderr line each) about model flags set by the user that
    differ from the model.json of the model folders eval, export and
    visualize restore: those modes rebuild the model from model.json."""
    for model_dir in dict.fromkeys((config.attention_checkpoint or config.model_dir,
                                    config.classifier_checkpoint or config.model_dir)):
        path = os.path.join(model_dir, SETTINGS_FILE)
        if not io_utils.exists(path):
            continue                    # restoring it says what is missing
        settings = io_utils.read_json(path, "model settings")
        for name in MODEL_FLAGS:
            value = getattr(config, name)
            if (name != "streams"      # choosing some of the model's streams is fine
                    and not config[name].using_default_value
                    and name in settings and value != settings[name]):
                print(f"warning: --{name}={str(value).lower()} is ignored: the model in "
                      f"{model_dir} has {name}={str(settings[name]).lower()}",
                      file=sys.stderr)
