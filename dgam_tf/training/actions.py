"""Actions the Controller runs after an epoch: periodic validation with
best-checkpoint keeping and summary images. They receive what to evaluate
and draw with as functions, so training imports neither evaluation nor
plotting."""
import json
import os

import tensorflow as tf

from dgam_tf import io_utils


class PeriodicValidation:
    """Every `every` epochs: evaluates the validation split (never the test
    split), writes its mAPs (and images of its first `num_plots` videos) as
    summaries and keeps the best checkpoint by its score in `best_dir`.

    Args:
      evaluate_fn: callable(models, split, on_video=None) -> metrics dict
        (evaluation.evaluate's keys); it calls on_video(video, outputs,
        detections) for each video it localizes.
      split: the validation split.
      every: epochs between validations.
      best_dir: where the best checkpoint and best.json are kept.
      draw_fn: callable(video, outputs, detections) -> image [1, H, W, C]
        for tf.summary.image, or None (no images).
      num_plots: videos drawn (0: none).
    """

    def __init__(self, evaluate_fn, split, every, best_dir, draw_fn=None, num_plots=0):
        self.evaluate_fn = evaluate_fn
        self.split = split
        self.every = every
        self.best_dir = best_dir
        self.draw_fn = draw_fn
        self.num_plots = num_plots if draw_fn is not None else 0

    def __call__(self, epoch, controller):
        if not self.every or epoch % self.every:
            return
        drawn = []

        def on_video(video, outputs, detections):
            if len(drawn) < self.num_plots:
                drawn.append((video["video_id"].decode(),
                              self.draw_fn(video, outputs, detections)))

        metrics = self.evaluate_fn(controller.trainer.models, self.split, on_video=on_video)
        name, score = selection_score(metrics)
        alone = ", ".join(f"{s} {100 * selection_score(m)[1]:.2f}"
                          for s, m in metrics.get("streams", {}).items())
        print(f"Epoch {epoch}: {self.split} {name} {100 * score:.2f}"
              + (f" ({alone} alone)" if alone else ""), flush=True)
        with controller.writer.as_default(step=epoch):
            for t, m in zip(metrics["tiou_thresholds"], metrics["mAP"]):
                tf.summary.scalar(f"{self.split}/mAP@{t:g}", m)
            for video_id, image in drawn:
                tf.summary.image(f"{self.split}/{video_id}", image)
        self._keep_if_best(controller.trainer.checkpoint, epoch, name, score)

    def _keep_if_best(self, checkpoint, epoch, name, score):
        best = _read_score(os.path.join(self.best_dir, "best.json"))
        if best is not None and score <= best:
            return
        with io_utils.atomic_output_dir(self.best_dir, overwrite=True) as tmp:
            checkpoint.write(os.path.join(tmp, "ckpt"))
            io_utils.atomic_write_json(os.path.join(tmp, "best.json"),
                                       {"epoch": epoch, "split": self.split, "score": score})
        print(f"Kept epoch {epoch} in {self.best_dir} ({self.split} {name} {100 * score:.2f}"
              + (f", previous best {100 * best:.2f})" if best is not None else ")"),
              flush=True)


def selection_score(metrics):
    """("mAP@0.5", its value) when evaluated, else ("average mAP", value)."""
    for t, m in zip(metrics["tiou_thresholds"], metrics["mAP"]):
        if abs(t - 0.5) < 1e-9:
            return "mAP@0.5", m
    return "average mAP", metrics["average_mAP"]


def _read_score(path):
    try:
        return json.loads(io_utils.read_bytes(path))["score"]
    except (OSError, ValueError, KeyError):
        return None
