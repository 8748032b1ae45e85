"""Actions the Controller runs after an epoch: periodic validation with
best-checkpoint keeping and summary images, and the periodic test record
(for --mode=study's test-selected number; it selects nothing). Each is built with what it
needs and called as `action(epoch, logs)`; it receives the evaluator as an
object, so training imports neither evaluation nor plotting."""
import json
import os

import tensorflow as tf

from dgam_tf import files


class PeriodicValidation:
    """Every `every` epochs: evaluates the validation split (never the test
    split), writes its mAPs (and images of its first `num_plots` videos) as
    summaries and keeps the best checkpoint by its score in `best_dir`.

    Args:
      evaluator: callable(models, data_dir, info, split, on_video=None) ->
        metrics dict (evaluation.evaluate's keys), calling on_video(video,
        outputs, detections) for each video it localizes, with a
        `draw(video, outputs, detections, class_names)` -> image [1, H, W, C]
        or None.
      data_dir, info: the data (records.DatasetInfo); split: its validation
        split.
      every: epochs between validations.
      best_dir: where the best checkpoint and best.json are kept.
      models: {stream: StreamModel} evaluated; checkpoint: the
        tf.train.Checkpoint kept when best; writer: the summary writer.
      num_plots: videos drawn (0: none).
    """

    def __init__(self, evaluator, data_dir, info, split, every, best_dir, models, checkpoint,
                 writer, num_plots=0):
        self.evaluator = evaluator
        self.data_dir, self.info, self.split = data_dir, info, split
        self.every = every
        self.best_dir = best_dir
        self.models, self.checkpoint, self.writer = models, checkpoint, writer
        self.num_plots = num_plots

    def __call__(self, epoch, logs):
        """Runs after `epoch` epochs with their mean scalars `logs`."""
        if not self.every or epoch % self.every:
            return
        drawn = []

        def on_video(video, outputs, detections):
            if len(drawn) < self.num_plots:
                image = self.evaluator.draw(video, outputs, detections, self.info.class_names)
                if image is not None:
                    drawn.append((video["video_id"].decode(), image))

        metrics = self.evaluator(self.models, self.data_dir, self.info, self.split,
                                 on_video=on_video)
        name, score = selection_score(metrics)
        alone = ", ".join(f"{s} {100 * selection_score(m)[1]:.2f}"
                          for s, m in metrics.get("streams", {}).items())
        print(f"Epoch {epoch}: {self.split} {name} {100 * score:.2f}"
              + (f" ({alone} alone)" if alone else ""), flush=True)
        with self.writer.as_default(step=epoch):
            for t, m in zip(metrics["tiou_thresholds"], metrics["mAP"]):
                tf.summary.scalar(f"{self.split}/mAP@{t:g}", 100 * m,   # % as printed
                                  description="mAP in percent")
            for video_id, image in drawn:
                tf.summary.image(f"{self.split}/{video_id}", image)
        self.keep(epoch, metrics)

    def keep(self, epoch, metrics):
        """Keeps the checkpoint in best_dir if its score is the best so far."""
        name, score = selection_score(metrics)
        self._keep_if_best(self.checkpoint, epoch, name, score)

    def _keep_if_best(self, checkpoint, epoch, name, score):
        best = _read_score(os.path.join(self.best_dir, "best.json"))
        if best is not None and score <= best:
            return
        with files.atomic_output_dir(self.best_dir, overwrite=True) as tmp:
            checkpoint.write(os.path.join(tmp, "ckpt"))
            files.atomic_write_json(os.path.join(tmp, "best.json"),
                                       {"epoch": epoch, "split": self.split, "score": score})
        print(f"Kept epoch {epoch} in {self.best_dir} ({self.split} {name} {100 * score:.2f}"
              + (f", previous best {100 * best:.2f})" if best is not None else ")"),
              flush=True)


class PeriodicTestRecord(PeriodicValidation):
    """Every `every` epochs before `epochs`: evaluates the test split, writes
    its mAPs as summaries and records its metrics (without detections) in
    `record_path`, {"split": split, "evaluations": [{"epoch": e, **metrics}]}.
    The last epoch is left to the test evaluation that follows training. It
    keeps no checkpoint: the record only lets a study report the best of
    these evaluations and the last, the "test-selected" number the release
    and most papers report, under that name.
    """

    def __init__(self, evaluator, data_dir, info, split, every, epochs, record_path, models,
                 writer):
        super().__init__(evaluator, data_dir, info, split, every, None, models, None, writer)
        self.epochs = epochs
        self.record_path = record_path

    def __call__(self, epoch, logs):
        if epoch < self.epochs:
            super().__call__(epoch, logs)

    def keep(self, epoch, metrics):
        """Appends the epoch's metrics (replacing a record of this epoch or
        later, left by a run that stopped before its checkpoint)."""
        record = read_test_record(self.record_path)
        kept = [e for e in record["evaluations"] if e["epoch"] < epoch]
        entry = {"epoch": epoch, **{k: v for k, v in metrics.items() if k != "results"}}
        files.atomic_write_json(self.record_path, {"split": self.split,
                                                   "evaluations": kept + [entry]})


def read_test_record(path):
    """The record of PeriodicTestRecord at `path` ({"evaluations": []} if none)."""
    if not files.exists(path):
        return {"evaluations": []}
    return files.read_json(path, "test evaluation record")


def selection_score(metrics):
    """("mAP@0.5", its value) when evaluated, else ("average mAP", value)."""
    for t, m in zip(metrics["tiou_thresholds"], metrics["mAP"]):
        if abs(t - 0.5) < 1e-9:
            return "mAP@0.5", m
    return "average mAP", metrics["average_mAP"]


def _read_score(path):
    try:
        return json.loads(files.read_bytes(path))["score"]
    except (OSError, ValueError, KeyError):
        return None
