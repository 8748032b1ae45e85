"""train_and_evaluate: a training run from its settings to the test metrics,
wiring the data, the model folder, the Trainer, its Controller and the
periodic validation."""
import os

from dgam_tf import io_utils
from dgam_tf.data.resolve import resolve_data
from dgam_tf.models import io as model_io
from dgam_tf.training import actions, controller, trainer as trainer_lib


def train_and_evaluate(model_dir, data, model, train, evaluate_fn=None, draw_fn=None):
    """Trains (resuming from model_dir) and evaluates the test split.

    Args:
      model_dir: the run's folder (model.json, checkpoints/, best/, train/).
      data: DataConfig; model: ModelConfig; train: TrainConfig.
      evaluate_fn: callable(models, data_dir, info, split, checkpoint=None,
        on_video=None) -> metrics (evaluation.evaluate.evaluate_split with
        its settings bound), or None to skip evaluation; used every
        `train.eval_every` epochs on the validation split, and at the end on
        the test split.
      draw_fn: callable(video, outputs, detections, class_names) -> image
        [1, H, W, C]: the validation's summary images (`train.num_plots`
        videos), or None.

    Returns:
      The test metrics (None without evaluate_fn, and on other workers than
      the chief).
    """
    data_dir, info = resolve_data(data)
    model = model.for_data(info)
    with io_utils.model_dir_lock(model_dir, multi_worker=train.strategy == "multi_worker"):
        model_io.write_settings(model_dir, model)
        trainer = trainer_lib.Trainer(data_dir, info, data, model, train)
        periodic = []
        # Only the chief keeps checkpoints and writes summaries; evaluation
        # involves no collective ops, so the other workers skip it.
        if evaluate_fn and trainer.chief and data.validation_split in info.splits:
            periodic.append(actions.PeriodicValidation(
                lambda models, split, on_video: evaluate_fn(models, data_dir, info, split,
                                                            on_video=on_video),
                data.validation_split, train.eval_every, os.path.join(model_dir, "best"),
                draw_fn and (lambda *item: draw_fn(*item, info.class_names)),
                train.num_plots))
        loop = controller.Controller(trainer, model_dir, train, periodic,
                                     final_evaluation=evaluate_fn is not None)
        loop.train()
        if evaluate_fn is None or not trainer.chief:
            return None
        return evaluate_fn(trainer.models, data_dir, info, data.test_split,
                           checkpoint=io_utils.abspath(loop.manager.latest_checkpoint))
