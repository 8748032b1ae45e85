"""The two-stage DGAM training step (docs/method.md §4).

Every epoch runs two passes over the training set, each with its own shuffle:
stage 1 updates only the CVAE (attention frozen), stage 2 only attention +
classifier (CVAE frozen). Both streams train side by side, independently,
each with its own two Adam optimizers.

The `Trainer` holds the models, optimizers and step functions and runs a
stage or an epoch (`train_stage`, `train_epoch`); the epoch loop around it,
with checkpoints, summaries and periodic actions, is training/controller.py.
"""
import functools
import sys
from typing import Dict, NamedTuple

import keras
import tensorflow as tf

from dgam_tf.data import pipeline, resident
from dgam_tf.errors import UserError
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.training import debug, distribute, inputs as inputs_lib, losses, optimizer

CVAE_STAGE, MODEL_STAGE = 1, 2


class StepOutput(NamedTuple):
    """What one step of one replica returns, per stream.

    Attributes:
      scalars: {stream: {name: scalar}}: the losses, each already divided by
        the global batch (so the replicas' values sum to the batch mean).
      finite: {stream: 1.0 if the loss and all gradients were finite, else 0.0}.
      attention: {stream: [b, n]} attention of the batch (stage 2 only).
    """
    scalars: Dict[str, Dict[str, tf.Tensor]]
    finite: Dict[str, tf.Tensor]
    attention: Dict[str, tf.Tensor]


def make_optimizer(train_cfg):
    """The Adam of one module group (TrainConfig's settings)."""
    opt = optimizer.Adam(train_cfg.learning_rate, beta_1=train_cfg.adam_beta1,
                         beta_2=train_cfg.adam_beta2, epsilon=train_cfg.adam_epsilon)
    if train_cfg.mixed_precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class Trainer:
    """Owns the models, their optimizers and the step functions.

    Args:
      data_dir: dataset folder; info: its records.DatasetInfo.
      data_cfg: DataConfig (the training split and its sampling).
      model_cfg: ModelConfig (feature size and classes are taken from `info`).
      train_cfg: TrainConfig.

    Attributes:
      models: {stream: StreamModel}; optimizers: {(stream, "model"|"cvae"):
        Adam}; epoch, step: int64 counters (epochs done, steps run);
        checkpoint: a tf.train.Checkpoint of all of them.
      stages: the stages of an epoch ((CVAE_STAGE,) MODEL_STAGE).
      inputs: the training.inputs.TrainInputs the stages draw from.
      step_fns: {stage: tf.function(batch, ramp) -> StepOutput}, one step.
      steps_per_stage: full batches per stage.
      last_attention: {stream: [b, n]} attention of the last stage-2 step.
    """

    def __init__(self, data_dir, info, data_cfg, model_cfg, train_cfg):
        self.data_dir = data_dir
        self.info = info
        self.data_cfg = data_cfg
        self.model_cfg = model_cfg.for_data(info)
        self.train_cfg = train_cfg
        self.streams = list(model_cfg.streams)
        self.stages = (CVAE_STAGE, MODEL_STAGE) if model_cfg.gam else (MODEL_STAGE,)
        self.strategy = distribute.make_strategy(train_cfg.strategy)
        self.chief = distribute.is_chief(self.strategy)
        self.steps_per_stage = self._steps_per_stage()
        self.inputs = inputs_lib.TrainInputs(data_dir, info, data_cfg, self.strategy, self.chief,
                                             self.steps_per_stage,
                                             model_cfg.latent_dim if model_cfg.gam else None)
        keras.utils.set_random_seed(train_cfg.seed)  # Same initialisation on every run.
        # Models built from here on compute in float16/bfloat16 with
        # --mixed_precision (the layers feeding the losses are float32, see
        # models/), else float32, whatever an earlier run in this process set.
        keras.mixed_precision.set_dtype_policy(train_cfg.mixed_precision or "float32")
        with self.strategy.scope():
            self.models = model_dir_lib.build_models(self.model_cfg,
                                                     initializer=train_cfg.initializer)
            self.optimizers = {}
            for s, m in self.models.items():
                parts = {"model": m.attention.trainable_variables +
                         m.classifier.trainable_variables}
                if model_cfg.gam:
                    parts["cvae"] = m.cvae.trainable_variables
                for part, variables in parts.items():
                    opt = make_optimizer(train_cfg)
                    opt.build(variables)
                    self.optimizers[(s, part)] = opt
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = model_dir_lib.make_checkpoint(self.models, self.optimizers,
                                                        epoch=self.epoch, step=self.step)
        self.last_attention = {}
        self._step_bodies = {CVAE_STAGE: self._cvae_step, MODEL_STAGE: self._model_step}
        self.step_fns = {stage: tf.function(body, jit_compile=train_cfg.jit_compile)
                         for stage, body in self._step_bodies.items()}
        if train_cfg.jit_compile and self.strategy.num_replicas_in_sync > 1 and self.chief:
            print(f"warning: --jit_compile is not applied with --strategy={train_cfg.strategy} "
                  f"({self.strategy.num_replicas_in_sync} replicas): the gradients' "
                  "all-reduce cannot be inside a compiled step", file=sys.stderr)
        # A stage's steps in one graph call (the steps themselves XLA-compiled
        # with --jit_compile; the loop, input and collectives are not).
        self._stage_graphs = {stage: tf.function(functools.partial(self._stage_graph, stage))
                              for stage in self.step_fns}

    def _steps_per_stage(self):
        data_cfg, strategy = self.data_cfg, self.strategy
        num_videos = self.info.splits[data_cfg.train_split]["num_videos"] if (
            data_cfg.train_split in self.info.splits) else 0
        if data_cfg.batch_size % strategy.num_replicas_in_sync:
            raise UserError(f"--batch_size {data_cfg.batch_size} is not divisible by the "
                            f"{strategy.num_replicas_in_sync} replicas")
        # One input pipeline per worker; each worker sees its share of videos.
        workers = distribute.num_workers(strategy)
        steps = (num_videos // workers) // (data_cfg.batch_size // workers)
        if steps < 1:
            raise UserError(f"--batch_size {data_cfg.batch_size} exceeds the {num_videos} "
                            f"training videos of split '{data_cfg.train_split}' (the last "
                            "partial batch is dropped, so no step would run)")
        return steps

    # ---- steps (traced once; run on every replica) -------------------------

    def _apply(self, stream, part, tape, loss, variables):
        """Backpropagates `loss` into `variables`; returns 1.0 if all finite."""
        opt = self.optimizers[(stream, part)]
        scaled = opt.scale_loss(loss) if hasattr(opt, "scale_loss") else loss
        grads = tape.gradient(scaled, variables)
        finite = tf.math.is_finite(loss)
        if not isinstance(opt, keras.optimizers.LossScaleOptimizer):
            # (A loss-scale optimizer skips non-finite float16 steps itself.)
            for g in grads:
                finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
        opt.apply_gradients(zip(grads, variables))
        return tf.cast(finite, tf.float32)

    def _average(self, per_example):
        # Divide by the *global* batch: summing the replicas' gradients then
        # gives the gradient of the mean over the whole batch.
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.data_cfg.batch_size)

    def _cvae_step(self, batch, ramp):
        """Stage 1: CVAE only. batch[s]: [B, n, D]; ramp: r(e) scalar."""
        scalars, finite = {}, {}
        for s in self.streams:
            scalars[s], finite[s] = self._cvae_stream_step(s, batch, ramp)
        return StepOutput(scalars, finite, {})

    def _cvae_stream_step(self, s, batch, ramp):
        model, x = self.models[s], batch[s]
        with tf.name_scope(s):  # Op names carry the stream (--debug_numerics, profiles).
            att = tf.stop_gradient(model.attention(x))              # [B, n]
            with tf.GradientTape() as tape:
                l_cvae = self._average(losses.cvae_loss(model.cvae, x, att, self.train_cfg.beta,
                                                        batch[s + "_noise"]))
                loss = self.train_cfg.cvae_weight * ramp * l_cvae
            finite = self._apply(s, "cvae", tape, loss, model.cvae.trainable_variables)
            return {"cvae": l_cvae}, finite

    def _model_step(self, batch, ramp):
        """Stage 2: attention + classifier. batch[s]: [B, n, D]; labels [B, C]."""
        scalars, finite, attention = {}, {}, {}
        for s in self.streams:
            scalars[s], finite[s], attention[s] = self._model_stream_step(s, batch, ramp)
        return StepOutput(scalars, finite, attention)

    def _model_stream_step(self, s, batch, ramp):
        model, x, labels = self.models[s], batch[s], batch["labels"]
        w_fg, w_bg, w_guide, w_recon = self.train_cfg.loss_weights[s]
        variables = model.attention.trainable_variables + model.classifier.trainable_variables
        with tf.name_scope(s):
            with tf.GradientTape() as tape:
                att = model.attention(x)                            # [B, n]
                f_fg, f_bg = losses.pooled_features(x, att)         # [B, D] each
                logits, tcam = model.classifier.logits_and_tcam(
                    tf.stack([f_fg, f_bg], axis=1), x)              # [B, 2, C+1], [B, n, C+1]
                terms = {
                    "fg": losses.foreground_loss(logits[:, 0], labels),
                    "bg": losses.background_loss(logits[:, 1]),
                    "guide": losses.guide_loss(att, tcam, labels),
                }
                per_example = w_fg * terms["fg"] + w_bg * terms["bg"] + w_guide * terms["guide"]
                if self.model_cfg.gam:
                    terms["recon"] = losses.reconstruction_loss(model.cvae, x, att,
                                                                batch[s + "_noise"])
                    recon_ramp = ramp if self.train_cfg.ramp_recon else 1.0
                    per_example += w_recon * recon_ramp * terms["recon"]
                loss = self._average(per_example)
            finite = self._apply(s, "model", tape, loss, variables)
            scalars = {"loss": loss,
                       "attention_mean": self._average(tf.reduce_mean(att, -1))}
            scalars.update({k: self._average(v) for k, v in terms.items()})
            return scalars, finite, att

    # ---- stages --------------------------------------------------------------

    def _stage_graph(self, stage, inputs, first, count, ramp):
        """Steps first .. first + count - 1 of a stage, stopping after the
        first non-finite one.

        Args:
          inputs: an iterator of distributed batches, or an inputs.ResidentDraw.

        Returns:
          (sums of the replica-reduced scalars over the steps run, as
          {stream: {name: sum}}, steps run, {stream: last step finite (bool)},
          {stream: [b, n] attention of the last stage-2 step, first replica}).
        """
        strategy = self.strategy
        # A nested tf.function cannot hold the replicas' all-reduce (merge_call).
        step_fn = (self.step_fns if strategy.num_replicas_in_sync == 1 else
                   self._step_bodies)[stage]
        if isinstance(inputs, inputs_lib.ResidentDraw):
            b = self.data_cfg.batch_size // strategy.num_replicas_in_sync
            local = strategy.num_replicas_in_sync // distribute.num_workers(strategy)

            def replica_step(data, i):
                start = (i * local + tf.cast(distribute.local_replica(strategy), tf.int64)) * b
                batch = resident.draw_batch(data, tf.slice(inputs.order, [start], [b]),
                                            inputs.perm, inputs.draw_seed, inputs.noise_seed,
                                            self.data_cfg, self.inputs.latent_dim)
                return step_fn(batch, ramp)

            def run(i):
                return strategy.run(replica_step, args=(inputs.data, tf.cast(i, tf.int64)))
        else:
            def run(i):
                return strategy.run(step_fn, args=(next(inputs), ramp))

        def one_step(i):
            out = run(i)
            self.step.assign_add(1)
            attention = {s: strategy.experimental_local_results(a)[0]
                         for s, a in out.attention.items()}
            scalars = tf.nest.map_structure(
                lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None),
                out.scalars)
            finite = {s: tf.logical_and(
                strategy.reduce(tf.distribute.ReduceOp.MEAN, f, axis=None) >= 1.0,
                tf.reduce_all([tf.math.is_finite(v) for v in scalars[s].values()]))
                for s, f in out.finite.items()}
            return scalars, finite, attention

        sums, finite, attention = one_step(first)
        done = tf.constant(1, tf.int32)
        while done < count and tf.reduce_all(list(finite.values())):
            # One step at a time: a later step's reads of the weights must
            # not race with an earlier step's updates.
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            scalars, finite, attention = one_step(first + done)
            sums = tf.nest.map_structure(tf.add, sums, scalars)
            done += 1
        return sums, done, finite, attention

    def train_stage(self, epoch, stage, inputs=None, progbar=None, before_call=None):
        """One pass over the training set; returns the stage's mean scalars.

        Its steps run in one graph call (one per step with --debug_numerics,
        which then names the step).

        Args:
          epoch: 0-based, for r(e) and the draw.
          stage: CVAE_STAGE or MODEL_STAGE.
          inputs: what the stage draws from (default:
            `self.inputs.for_epoch(epoch, [stage])[stage]`).
          progbar: a keras Progbar to advance, or None.
          before_call: called with the global steps (a range) of each graph
            call before it runs (the profiler's hook).

        Raises:
          debug.NonFiniteError: a non-finite loss, gradient or (with
            --debug_numerics) op output, naming stream, stage, epoch and step.
        """
        cfg = self.train_cfg
        ramp = tf.constant(losses.ramp(epoch, cfg.ramp_epochs, cfg.ramp_chunk_epochs),
                           tf.float32)
        graph = self._stage_graphs[stage]
        calls = ([(i, 1) for i in range(self.steps_per_stage)] if cfg.debug_numerics
                 else [(0, self.steps_per_stage)])
        sums = {}
        with pipeline.reading(self.data_dir, self.info, self.data_cfg.train_split):
            if inputs is None:
                inputs = self.inputs.for_epoch(epoch, [stage])[stage]
            for first, count in calls:
                step = int(self.step.numpy())
                if before_call is not None:
                    before_call(range(step, step + count))
                with tf.profiler.experimental.Trace(f"stage{stage}", step_num=step, _r=1):
                    try:
                        out, done, finite, attention = graph(
                            inputs, tf.constant(first), tf.constant(count), ramp)
                    except tf.errors.OutOfRangeError:
                        raise pipeline.fewer_videos_error(
                            self.data_dir, self.info, self.data_cfg.train_split) from None
                    except tf.errors.InvalidArgumentError as e:
                        culprit = debug.numerics_culprit(e, self.streams)
                        if culprit is None:
                            raise                       # a data error: see pipeline.reading
                        stream, op = culprit
                        raise debug.NonFiniteError(
                            f"non-finite value in stream {stream}, stage {stage}, epoch "
                            f"{epoch}, step {first}, from {op}") from None
                self.last_attention.update(attention)
                for s in self.streams:
                    if not finite[s]:
                        raise debug.NonFiniteError(
                            f"non-finite loss or gradient in stream {s}, stage {stage}, "
                            f"epoch {epoch}, step {first + int(done) - 1}")
                values = {f"{s}/{k}": float(v) for s, scalars in out.items()
                          for k, v in scalars.items()}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if progbar is not None:
                    progbar.add(count, [(k, v / count) for k, v in values.items()
                                        if k.endswith(("/cvae", "/loss"))])
        return {k: v / self.steps_per_stage for k, v in sums.items()}

    def train_epoch(self, epoch, progbar=None, before_call=None):
        """Both stages of an epoch (`train_stage`); returns their mean scalars
        as {"stage<k>/<name>": value}. Does not advance `self.epoch`."""
        with pipeline.reading(self.data_dir, self.info, self.data_cfg.train_split):
            inputs = self.inputs.for_epoch(epoch, self.stages)
        logs = {}
        for stage in self.stages:
            logs.update({f"stage{stage}/{k}": v for k, v in self.train_stage(
                epoch, stage, inputs[stage], progbar, before_call).items()})
        return logs
