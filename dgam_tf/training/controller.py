"""The epoch loop around a Trainer (in the manner of Orbit's Controller):
resuming, per-epoch console lines and summaries, the stream-collapse check,
periodic actions (validation, best-keeping: training/actions.py), the
profiler and the checkpoints."""
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from dgam_tf.errors import UserError
from dgam_tf.training import debug, health, losses


class Controller:
    """Trains a Trainer to `train_cfg.epochs`, resuming from model_dir.

    Args:
      trainer: a training.trainer.Trainer.
      model_dir: where checkpoints/ and the train/ summaries go (the chief's;
        other workers write theirs aside and delete them).
      train_cfg: TrainConfig.
      actions: callables `action(epoch, logs)` (logs: the epoch's mean
        scalars), run in order after each epoch's summaries and before its
        checkpoint (epoch counts the epochs done); more can be appended to
        `actions` once the controller's writer exists.
      final_evaluation: an evaluation follows `train` (said when nothing is
        left to train).

    Attributes:
      manager: the tf.train.CheckpointManager of model_dir/checkpoints.
      writer: the train/ summary writer.
      collapsed: {stream: why it looks collapsed, or None}.
    """

    def __init__(self, trainer, model_dir, train_cfg, actions=(), final_evaluation=False):
        self.trainer = trainer
        self.model_dir = model_dir
        self.train_cfg = train_cfg
        self.actions = list(actions)
        self.final_evaluation = final_evaluation
        chief = trainer.chief
        ckpt_dir = (os.path.join(model_dir, "checkpoints") if chief else
                    tempfile.mkdtemp(prefix="dgam_worker_ckpt_"))  # collectives: all save
        self.manager = tf.train.CheckpointManager(trainer.checkpoint, ckpt_dir,
                                                  max_to_keep=train_cfg.keep_checkpoints)
        self.writer = tf.summary.create_file_writer(
            os.path.join(model_dir, "train") if chief else tempfile.mkdtemp())
        self.collapsed = {}

    def restore(self):
        """Resumes from the latest checkpoint, if any; returns the next epoch."""
        trainer, latest = self.trainer, self.manager.latest_checkpoint
        if latest:
            trainer.checkpoint.restore(latest).assert_existing_objects_matched()
            epoch, epochs = int(trainer.epoch.numpy()), self.train_cfg.epochs
            if trainer.chief and epoch >= epochs:
                print(f"Nothing left to train: {latest} has trained {epoch} epochs, "
                      f"--epochs={epochs}" + ("; evaluating it" if self.final_evaluation else ""))
            elif trainer.chief:
                print(f"Resuming from {latest} (epoch {epoch})")
        return int(trainer.epoch.numpy())

    def train(self):
        """Trains from the latest checkpoint to --epochs; returns the last
        epoch's mean scalars."""
        cfg, trainer = self.train_cfg, self.trainer
        start = self.restore()
        first_step = int(trainer.step.numpy())
        profiler = debug.Profiler(cfg.profile_steps, os.path.join(self.model_dir, "train"), range(
            first_step, first_step + max(cfg.epochs - start, 0) * len(trainer.stages)
            * trainer.steps_per_stage), trainer.chief)
        # A bar on a terminal; piped output gets one line per epoch instead.
        bar = cfg.progress and trainer.chief and sys.stdout.isatty()
        logs = {}
        for epoch in range(start, cfg.epochs):
            progbar, started = None, time.monotonic()
            if bar:
                print(f"Epoch {epoch + 1}/{cfg.epochs}")
                progbar = keras.utils.Progbar(len(trainer.stages) * trainer.steps_per_stage)
            try:
                logs = trainer.train_epoch(epoch, progbar, profiler.at_steps)
            except (UserError, KeyboardInterrupt) as e:
                if progbar is not None:
                    print(flush=True)   # End the bar's line before the error line.
                if isinstance(e, debug.NonFiniteError):
                    raise debug.NonFiniteError(
                        f"{e}: training stopped; the last good checkpoint is kept "
                        f"({self.manager.latest_checkpoint or 'none yet'})") from None
                raise
            if cfg.progress and trainer.chief and not bar:
                print(f"Epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
                    f"{k.split('/', 1)[1]} {v:.4f}" for k, v in logs.items()
                    if k.endswith(("/cvae", "/loss"))) + f" ({time.monotonic() - started:.0f} s)",
                    flush=True)
            trainer.epoch.assign(epoch + 1)
            collapsed = self._check_collapse(epoch + 1, logs)
            with self.writer.as_default(step=epoch + 1):
                for k, v in logs.items():
                    tf.summary.scalar(k, v)
                for s, reason in collapsed.items():
                    tf.summary.scalar(f"{s}/collapsed", float(reason is not None))
                tf.summary.scalar("ramp", losses.ramp(epoch, cfg.ramp_epochs,
                                                      cfg.ramp_chunk_epochs))
                tf.summary.scalar("learning_rate", cfg.learning_rate)
                for s, att in trainer.last_attention.items():
                    tf.summary.histogram(f"{s}/attention", att)
            for action in self.actions:
                action(epoch + 1, logs)
            self.manager.save(checkpoint_number=epoch + 1)
        profiler.stop()
        self.writer.flush()
        if not trainer.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
        return logs

    def _check_collapse(self, epoch, logs):
        """{stream: reason or None} after `epoch` epochs; warns (chief, one line
        to stderr) when a stream becomes collapsed (health.collapse_reason)."""
        collapsed = {}
        for s in self.trainer.streams:
            if f"stage2/{s}/attention_mean" not in logs:
                continue
            reason = health.collapse_reason(logs[f"stage2/{s}/attention_mean"],
                                            logs[f"stage2/{s}/fg"],
                                            self.trainer.info.num_classes, epoch)
            if reason and not self.collapsed.get(s) and self.trainer.chief:
                print(health.warning_line(s, epoch, reason), file=sys.stderr, flush=True)
            self.collapsed[s] = collapsed[s] = reason
        return collapsed
