"""train_and_evaluate: a training run from its settings to the test metrics,
wiring the data, the model folder, the Trainer, its Controller and the
periodic validation."""
import functools
import os

from dgam_tf import files
from dgam_tf.data.resolve import resolve_data
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.training import actions, controller, distribute, lock, trainer as trainer_lib

TEST_RECORD_FILE = "test_evaluations.json"


def train_and_evaluate(model_dir, data_cfg, model_cfg, train_cfg, evaluator=None,
                       record_test=False):
    """Trains (resuming from model_dir) and evaluates the test split.

    Args:
      model_dir: the run's folder (model.json, checkpoints/, best/, train/).
      data_cfg: DataConfig; model_cfg: ModelConfig; train_cfg: TrainConfig.
      evaluator: callable(models, data_dir, info, split, checkpoint=None,
        on_video=None) -> metrics, with a `draw(video, outputs, detections,
        class_names)` -> summary image or None (evaluation.evaluate.Evaluator),
        or None to skip evaluation; used every `train_cfg.eval_every` epochs
        on the validation split, and at the end on the test split.
      record_test: also evaluate the test split every `train_cfg.eval_every`
        epochs and record it in <model_dir>/test_evaluations.json
        (actions.PeriodicTestRecord; it selects nothing).

    Returns:
      The test metrics (None without evaluator, and on other workers than
      the chief).
    """
    data_dir, info = resolve_data(data_cfg)
    model_cfg = model_cfg.for_data(info)
    with lock.model_dir_lock(model_dir, multi_worker=train_cfg.strategy == "multi_worker"):
        model_dir_lib.write_settings(model_dir, model_cfg)
        model_dir_lib.write_features(model_dir, info.features)
        trainer = trainer_lib.Trainer(data_dir, info, data_cfg, model_cfg, train_cfg)
        loop = controller.Controller(trainer, model_dir, train_cfg,
                                     final_evaluation=evaluator is not None)
        # Only the chief keeps checkpoints and writes summaries; evaluation
        # involves no collective ops, so the other workers skip it.
        if evaluator and trainer.chief and data_cfg.validation_split in info.splits:
            loop.actions.append(actions.PeriodicValidation(
                evaluator, data_dir, info, data_cfg.validation_split, train_cfg.eval_every,
                os.path.join(model_dir, "best"), trainer.models, trainer.checkpoint,
                loop.writer, train_cfg.num_plots))
        if evaluator and trainer.chief and record_test:
            loop.actions.append(actions.PeriodicTestRecord(
                evaluator, data_dir, info, data_cfg.test_split, train_cfg.eval_every,
                train_cfg.epochs, os.path.join(model_dir, TEST_RECORD_FILE), trainer.models,
                loop.writer))
        loop.train()
        if evaluator is None or not trainer.chief:
            return None
        return evaluator(trainer.models, data_dir, info, data_cfg.test_split,
                         checkpoint=files.abspath(loop.manager.latest_checkpoint))


def run(cfg, record_test=False):
    """--mode=train: trains, validating every --eval_every epochs (with
    summary images), then evaluates --test_split and reports it. The
    workflow joins training, evaluation and plots; the Trainer, Controller
    and actions import neither. `record_test`: see train_and_evaluate
    (--mode=study's seeds)."""
    import tensorflow as tf
    from dgam_tf.evaluation import evaluate
    from dgam_tf.visualization import plots
    evaluate.check_output_paths(cfg.model_dir, cfg.evaluation, cfg.data.test_split)
    distribute.split_cpu(cfg.train.cpu_devices)
    if cfg.train.deterministic:
        tf.config.experimental.enable_op_determinism()
    metrics = train_and_evaluate(
        cfg.model_dir, cfg.data, cfg.model, cfg.train,
        evaluate.Evaluator(cfg.data, cfg.localization, cfg.evaluation,
                           functools.partial(plots.video_image, min_score=cfg.plot.min_score)),
        record_test)
    if metrics is not None:
        evaluate.report(metrics, cfg.model_dir, cfg.evaluation)
