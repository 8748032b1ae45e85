"""The trainer's input side: what each stage's graph draws its batches from.

Two residencies give the same batches (data/resident.py):
  * streamed: one distributed tf.data iterator over the epoch's stages
    (pipeline.train_dataset), parsed from the records every stage;
  * resident: the training split held as tensors on every replica's device,
    with each stage's draw (pipeline.stage_order) gathered in-graph.
"""
from typing import Any, NamedTuple

import tensorflow as tf

from dgam_tf.data import pipeline, resident
from dgam_tf.training import distribute


class ResidentDraw(NamedTuple):
    """One stage's draw from the resident split (the stage graph's input).

    Attributes:
      data: the split's tensors per replica (resident.load's arrays).
      order, perm: pipeline.stage_order's video order and permutation.
      draw_seed, noise_seed: int64 scalars of the segment draw and CVAE noise.
    """
    data: Any
    order: Any
    perm: Any
    draw_seed: tf.Tensor
    noise_seed: tf.Tensor


class TrainInputs:
    """Feeds a Trainer's stages.

    Args:
      data_dir, info: the dataset (records.DatasetInfo).
      data_cfg: DataConfig (the training split, its sampling and residency).
      strategy: the tf.distribute strategy; chief: whether this task logs.
      steps_per_stage: full global batches per stage.
      latent_dim: CVAE noise size drawn with each batch (None without GAM).

    Attributes:
      resident: the split's tensors per replica once `for_epoch` decided to
        hold it; None while streaming (or before the first call).
    """

    def __init__(self, data_dir, info, data_cfg, strategy, chief, steps_per_stage, latent_dim):
        self.data_dir, self.info, self.data_cfg = data_dir, info, data_cfg
        self.strategy, self.chief = strategy, chief
        self.steps_per_stage = steps_per_stage
        self.latent_dim = latent_dim
        self.resident = None
        self._decided = False

    def dataset(self, epoch, stages):
        """The epoch's batches, stage after stage, as one distributed dataset:
        the next stage's reading and shuffling then starts in the background
        (prefetch) while the current stage's last steps run."""
        # Per-replica batches one pipeline feeds into a stage's steps; a
        # stage's leftover batches must not spill into the next stage.
        batches = (self.steps_per_stage * self.strategy.num_replicas_in_sync
                   // distribute.num_workers(self.strategy))

        def dataset_fn(ctx):
            datasets = [pipeline.train_dataset(self.data_dir, self.info, self.data_cfg, epoch,
                                               stage, self.latent_dim, ctx).take(batches)
                        for stage in stages]
            for ds in datasets[1:]:
                datasets[0] = datasets[0].concatenate(ds)
            return datasets[0]
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def for_epoch(self, epoch, stages):
        """{stage: what its graph draws batches from}: one distributed iterator
        shared by the epoch's stages when streaming, else a ResidentDraw per
        stage. The first call decides the residency (resident.choose) and
        says so in one line."""
        if not self._decided:
            hold, line = resident.choose(self.data_dir, self.info, self.data_cfg)
            if self.chief:
                print(line, flush=True)
            self.resident = self._load_resident() if hold else None
            self._decided = True
        if self.resident is None:
            iterator = iter(self.dataset(epoch, stages))
            return {stage: iterator for stage in stages}
        num_videos = self.info.splits[self.data_cfg.train_split]["num_videos"]
        context = distribute.input_context(self.strategy)
        draws = {}
        for stage in stages:
            order, perm, draw_seed, noise_seed = pipeline.stage_order(
                num_videos, self.data_cfg, epoch, stage, context)
            draws[stage] = ResidentDraw(self.resident, order, perm,
                                        tf.constant(draw_seed, tf.int64),
                                        tf.constant(noise_seed, tf.int64))
        return draws

    def _load_resident(self):
        """resident.load()'s arrays as tensors on every replica's device."""
        tensors = {k: tf.constant(v) for k, v in
                   resident.load(self.data_dir, self.info, self.data_cfg).items()}
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: {k: tf.identity(v) for k, v in tensors.items()})
