"""The two-stage DGAM training step (algorithm.md §4).

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

import keras
import tensorflow as tf

from dgam_tf.data import pipeline, resident
from dgam_tf.errors import UserError
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.training import debug, distribute, losses, optimizer

CVAE_STAGE, MODEL_STAGE = 1, 2


def make_optimizer(train):
    """The Adam of one module group (TrainConfig's settings)."""
    opt = optimizer.Adam(train.learning_rate, beta_1=train.adam_beta1,
                         beta_2=train.adam_beta2, epsilon=train.adam_epsilon)
    if train.mixed_precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


class Trainer:
    """Owns the models, their optimizers and the step functions.

    Args:
      data_dir: dataset folder; info: its records.DatasetInfo.
      data: DataConfig (the training split and its sampling).
      model: ModelConfig (feature size and classes are taken from `info`).
      train: TrainConfig.

    Attributes:
      models: {stream: StreamModel}; optimizers: {(stream, "model"|"cvae"):
        Adam}; epoch, step: int64 counters (epochs done, steps run);
        checkpoint: a tf.train.Checkpoint of all of them.
      stages: the stages of an epoch ((CVAE_STAGE,) MODEL_STAGE).
      step_fns: {stage: tf.function(batch, ramp) -> scalars}, one step.
      steps_per_stage: full batches per stage.
      last_attention: {stream: [b, n]} attention of the last stage-2 step.
    """

    def __init__(self, data_dir, info, data, model, train):
        self.data_dir = data_dir
        self.info = info
        self.data = data
        self.model_config = model.for_data(info)
        self.train_config = train
        self.streams = list(model.streams)
        self.latent_dim = model.latent_dim if model.gam else None
        self.stages = (CVAE_STAGE, MODEL_STAGE) if model.gam else (MODEL_STAGE,)
        self.strategy = distribute.make_strategy(train.strategy)
        self.chief = distribute.is_chief(self.strategy)
        self.steps_per_stage = self._steps_per_stage()
        keras.utils.set_random_seed(train.seed)  # Same initialisation on every run.
        # Models built from here on compute in float16/bfloat16 with
        # --mixed_precision (the layers feeding the losses are float32, see
        # models/), else float32, whatever an earlier run in this process set.
        keras.mixed_precision.set_dtype_policy(train.mixed_precision or "float32")
        with self.strategy.scope():
            self.models = model_dir_lib.build_models(self.model_config,
                                                initializer=train.initializer)
            self.optimizers = {}
            for s, m in self.models.items():
                parts = {"model": m.attention.trainable_variables +
                         m.classifier.trainable_variables}
                if model.gam:
                    parts["cvae"] = m.cvae.trainable_variables
                for part, variables in parts.items():
                    opt = make_optimizer(train)
                    opt.build(variables)
                    self.optimizers[(s, part)] = opt
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = model_dir_lib.make_checkpoint(self.models, self.optimizers,
                                                   epoch=self.epoch, step=self.step)
        self.last_attention = {}
        self._step_bodies = {CVAE_STAGE: self._cvae_step, MODEL_STAGE: self._model_step}
        self.step_fns = {stage: tf.function(body, jit_compile=train.jit_compile)
                         for stage, body in self._step_bodies.items()}
        if train.jit_compile and self.strategy.num_replicas_in_sync > 1 and self.chief:
            print(f"warning: --jit_compile is not applied with --strategy={train.strategy} "
                  f"({self.strategy.num_replicas_in_sync} replicas): the gradients' "
                  "all-reduce cannot be inside a compiled step", file=sys.stderr)
        # A stage's steps in one graph call (the steps themselves XLA-compiled
        # with --jit_compile; the loop, input and collectives are not).
        self._stage_graphs = {stage: tf.function(functools.partial(self._stage_graph, stage))
                              for stage in self.step_fns}
        self._resident = None     # the split's tensors per replica; False: streaming

    def _steps_per_stage(self):
        data, strategy = self.data, self.strategy
        num_videos = self.info.splits[data.train_split]["num_videos"] if (
            data.train_split in self.info.splits) else 0
        if data.batch_size % strategy.num_replicas_in_sync:
            raise UserError(f"--batch_size {data.batch_size} is not divisible by the "
                            f"{strategy.num_replicas_in_sync} replicas")
        # One input pipeline per worker; each worker sees its share of videos.
        workers = distribute.num_workers(strategy)
        steps = (num_videos // workers) // (data.batch_size // workers)
        if steps < 1:
            raise UserError(f"--batch_size {data.batch_size} exceeds the {num_videos} "
                            f"training videos of split '{data.train_split}' (the last "
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
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.data.batch_size)

    def _cvae_step(self, batch, ramp):
        """Stage 1: CVAE only. batch[s]: [B, n, D]; ramp: r(e) scalar."""
        out = {}
        for s in self.streams:
            out.update(self._cvae_stream_step(s, batch, ramp))
        return out

    def _cvae_stream_step(self, s, batch, ramp):
        model, x = self.models[s], batch[s]
        with tf.name_scope(s):  # Op names carry the stream (--debug_numerics, profiles).
            att = tf.stop_gradient(model.attention(x))              # [B, n]
            with tf.GradientTape() as tape:
                l_cvae = self._average(losses.cvae_loss(model.cvae, x, att, self.train_config.beta,
                                                        batch[s + "_noise"]))
                loss = self.train_config.cvae_weight * ramp * l_cvae
            return {f"{s}/finite": self._apply(s, "cvae", tape, loss,
                                               model.cvae.trainable_variables),
                    f"{s}/cvae": l_cvae}

    def _model_step(self, batch, ramp):
        """Stage 2: attention + classifier. batch[s]: [B, n, D]; labels [B, C]."""
        out = {}
        for s in self.streams:
            out.update(self._model_stream_step(s, batch, ramp))
        return out

    def _model_stream_step(self, s, batch, ramp):
        model, x, labels = self.models[s], batch[s], batch["labels"]
        w_fg, w_bg, w_guide, w_recon = self.train_config.loss_weights[s]
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
                if self.model_config.gam:
                    terms["recon"] = losses.reconstruction_loss(model.cvae, x, att,
                                                                batch[s + "_noise"])
                    recon_ramp = ramp if self.train_config.ramp_recon else 1.0
                    per_example += w_recon * recon_ramp * terms["recon"]
                loss = self._average(per_example)
            out = {f"{s}/finite": self._apply(s, "model", tape, loss, variables),
                   f"{s}/loss": loss,
                   f"{s}/attention_mean": self._average(tf.reduce_mean(att, -1)),
                   f"{s}/attention": att}                           # [B, n], for histograms
            out.update({f"{s}/{k}": self._average(v) for k, v in terms.items()})
            return out

    # ---- input ---------------------------------------------------------------

    def dataset(self, epoch, stages):
        """The epoch's batches, stage after stage, as one distributed dataset:
        the next stage's reading and shuffling then starts in the background
        (prefetch) while the current stage's last steps run."""
        # Per-replica batches one pipeline feeds into a stage's steps; a
        # stage's leftover batches must not spill into the next stage.
        batches = (self.steps_per_stage * self.strategy.num_replicas_in_sync
                   // distribute.num_workers(self.strategy))

        def dataset_fn(ctx):
            datasets = [pipeline.train_dataset(self.data_dir, self.info, self.data, epoch,
                                               stage, self.latent_dim, ctx).take(batches)
                        for stage in stages]
            for ds in datasets[1:]:
                datasets[0] = datasets[0].concatenate(ds)
            return datasets[0]
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def inputs(self, epoch, stages):
        """{stage: what its graph draws batches from}: one distributed iterator
        over the epoch's stages when streaming; else the resident tensors and
        the stage's draw (pipeline.stage_order). The first call decides the
        residency (resident.choose) and says so in one line."""
        if self._resident is None:
            hold, line = resident.choose(self.data_dir, self.info, self.data)
            if self.chief:
                print(line, flush=True)
            self._resident = hold and self._load_resident()
        if self._resident is False:
            iterator = iter(self.dataset(epoch, stages))
            return {stage: iterator for stage in stages}
        num_videos = self.info.splits[self.data.train_split]["num_videos"]
        context = distribute.input_context(self.strategy)
        inputs = {}
        for stage in stages:
            order, perm, draw_seed, noise_seed = pipeline.stage_order(
                num_videos, self.data, epoch, stage, context)
            inputs[stage] = (self._resident, order, perm,
                             tf.constant(draw_seed, tf.int64), tf.constant(noise_seed, tf.int64))
        return inputs

    def _load_resident(self):
        """resident.load()'s arrays as tensors on every replica's device."""
        tensors = {k: tf.constant(v) for k, v in
                   resident.load(self.data_dir, self.info, self.data).items()}
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: {k: tf.identity(v) for k, v in tensors.items()})

    # ---- stages --------------------------------------------------------------

    def _stage_graph(self, stage, inputs, first, count, ramp):
        """Steps first .. first + count - 1 of a stage, stopping after the
        first non-finite one.

        Returns:
          (sums of the replica-reduced scalars over the steps run, steps run,
          {stream: last step finite (bool)}, {stream: [b, n] attention of the
          last stage-2 step, first replica}).
        """
        strategy = self.strategy
        # A nested tf.function cannot hold the replicas' all-reduce (merge_call).
        step_fn = (self.step_fns if strategy.num_replicas_in_sync == 1 else
                   self._step_bodies)[stage]
        if self._resident is False:
            def run(i):
                return strategy.run(step_fn, args=(next(inputs), ramp))
        else:
            data, order, perm, draw_seed, noise_seed = inputs
            b = self.data.batch_size // strategy.num_replicas_in_sync
            local = strategy.num_replicas_in_sync // distribute.num_workers(strategy)

            def replica_step(data, i):
                start = (i * local + tf.cast(distribute.local_replica(strategy), tf.int64)) * b
                batch = resident.draw_batch(data, tf.slice(order, [start], [b]), perm,
                                            draw_seed, noise_seed, self.data,
                                            self.latent_dim)
                return step_fn(batch, ramp)

            def run(i):
                return strategy.run(replica_step, args=(data, tf.cast(i, tf.int64)))

        def one_step(i):
            per_replica = run(i)
            self.step.assign_add(1)
            attention = {s: strategy.experimental_local_results(
                per_replica.pop(f"{s}/attention"))[0]
                for s in self.streams if f"{s}/attention" in per_replica}
            out = {k: strategy.reduce(tf.distribute.ReduceOp.MEAN if k.endswith("/finite")
                                      else tf.distribute.ReduceOp.SUM, v, axis=None)
                   for k, v in per_replica.items()}
            finite = {s: tf.logical_and(out.pop(f"{s}/finite") >= 1.0, tf.reduce_all(
                [tf.math.is_finite(v) for k, v in out.items() if k.startswith(s + "/")]))
                for s in self.streams}
            return out, finite, attention

        sums, finite, attention = one_step(first)
        done = tf.constant(1, tf.int32)
        while done < count and tf.reduce_all(list(finite.values())):
            # One step at a time: a later step's reads of the weights must
            # not race with an earlier step's updates.
            tf.autograph.experimental.set_loop_options(parallel_iterations=1)
            out, finite, attention = one_step(first + done)
            sums = {k: sums[k] + v for k, v in out.items()}
            done += 1
        return sums, done, finite, attention

    def train_stage(self, epoch, stage, inputs=None, progbar=None, before_call=None):
        """One pass over the training set; returns the stage's mean scalars.

        Its steps run in one graph call (one per step with --debug_numerics,
        which then names the step).

        Args:
          epoch: 0-based, for r(e) and the draw.
          stage: CVAE_STAGE or MODEL_STAGE.
          inputs: what the stage draws from (default: `inputs(epoch, [stage])`).
          progbar: a keras Progbar to advance, or None.
          before_call: called with the global steps (a range) of each graph
            call before it runs (the profiler's hook).

        Raises:
          debug.NonFiniteError: a non-finite loss, gradient or (with
            --debug_numerics) op output, naming stream, stage, epoch and step.
        """
        cfg = self.train_config
        ramp = tf.constant(losses.ramp(epoch, cfg.ramp_epochs, cfg.ramp_chunk_epochs),
                           tf.float32)
        graph = self._stage_graphs[stage]
        calls = ([(i, 1) for i in range(self.steps_per_stage)] if cfg.debug_numerics
                 else [(0, self.steps_per_stage)])
        sums = {}
        with pipeline.reading(self.data_dir, self.info, self.data.train_split):
            if inputs is None:
                inputs = self.inputs(epoch, [stage])[stage]
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
                            self.data_dir, self.info, self.data.train_split) from None
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
                values = {k: float(v) for k, v in out.items()}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if progbar is not None:
                    progbar.add(count, [(k, v / count) for k, v in values.items()
                                        if k.endswith(("/cvae", "/loss"))])
        return {k: v / self.steps_per_stage for k, v in sums.items()}

    def train_epoch(self, epoch, progbar=None, before_call=None):
        """Both stages of an epoch (`train_stage`); returns their mean scalars
        as {"stage<k>/<name>": value}. Does not advance `self.epoch`."""
        with pipeline.reading(self.data_dir, self.info, self.data.train_split):
            inputs = self.inputs(epoch, self.stages)
        logs = {}
        for stage in self.stages:
            logs.update({f"stage{stage}/{k}": v for k, v in self.train_stage(
                epoch, stage, inputs[stage], progbar, before_call).items()})
        return logs
