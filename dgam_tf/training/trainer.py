"""The two-stage DGAM training loop (algorithm.md §4).

Every epoch runs two passes over the training set, each with its own shuffle:
stage 1 updates only the CVAE (attention frozen), stage 2 only attention +
classifier (CVAE frozen). Both streams train side by side, independently,
each with its own two Adam optimizers.
"""
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf

from dgam_tf import flags as dgam_flags
from dgam_tf import io_utils
from dgam_tf.data import pipeline, resident
from dgam_tf.errors import UserError
from dgam_tf.evaluation import evaluate
from dgam_tf.models.dgam import StreamModel
from dgam_tf.training import distribute, health, losses, optimizer
from dgam_tf.visualization import plots

CVAE_STAGE, MODEL_STAGE = 1, 2


class NonFiniteError(UserError):
    """A loss or gradient became NaN/Inf."""


def make_optimizer(config):
    opt = optimizer.Adam(config.learning_rate, beta_1=config.adam_beta1,
                         beta_2=config.adam_beta2, epsilon=config.adam_epsilon)
    if config.mixed_precision == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def build_models(config, feature_dim, num_classes):
    """{stream: StreamModel} with all variables created."""
    models = {}
    for stream in config.streams:
        models[stream] = StreamModel.from_config_flags(config, feature_dim, num_classes,
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


class Trainer:
    """Owns models, optimizers, the checkpoint and the epoch loop.

    Args:
      config: flags (see dgam_tf/flags.py).
      data_dir: dataset folder; info: its records.DatasetInfo.
      evaluate_fn: optional callable(models, split) -> metrics dict, used by
        --eval_every on the validation split.
    """

    def __init__(self, config, data_dir, info, evaluate_fn=None):
        self.config = config
        self.data_dir = data_dir
        self.info = info
        self.evaluate_fn = evaluate_fn
        self.streams = list(config.streams)
        self.strategy = distribute.make_strategy(config.strategy)
        self.chief = distribute.is_chief(self.strategy)
        self.steps_per_stage = self._steps_per_stage()
        self.weights = {s: dgam_flags.loss_weights(config, s) for s in self.streams}
        keras.utils.set_random_seed(config.seed)  # Same initialisation on every run.
        if config.mixed_precision:
            # Models built from here on compute in float16/bfloat16; the
            # layers feeding the losses are float32 (see models/).
            keras.mixed_precision.set_dtype_policy(config.mixed_precision)
        with self.strategy.scope():
            self.models = build_models(config, info.feature_dim, info.num_classes)
            self.optimizers = {}
            for s, model in self.models.items():
                parts = {"model": model.attention.trainable_variables +
                         model.classifier.trainable_variables}
                if config.gam:
                    parts["cvae"] = model.cvae.trainable_variables
                for part, variables in parts.items():
                    opt = make_optimizer(config)
                    opt.build(variables)
                    self.optimizers[(s, part)] = opt
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.checkpoint = make_checkpoint(self.models, self.optimizers,
                                          epoch=self.epoch, step=self.step)
        ckpt_dir = os.path.join(config.model_dir, "checkpoints")
        if not self.chief:  # Other workers save too (collectives), but aside.
            ckpt_dir = tempfile.mkdtemp(prefix="dgam_worker_ckpt_")
        self.manager = tf.train.CheckpointManager(self.checkpoint, ckpt_dir,
                                                  max_to_keep=config.keep_checkpoints)
        self.best_dir = os.path.join(config.model_dir, "best")
        self.last_attention = {}  # stream -> attention [B, n] of the last stage-2 batch
        self.collapsed = {}       # stream -> why it looks collapsed (None: healthy)
        self._step_bodies = {CVAE_STAGE: self._cvae_step, MODEL_STAGE: self._model_step}
        self._steps = {stage: tf.function(body, jit_compile=config.jit_compile)
                       for stage, body in self._step_bodies.items()}
        if config.jit_compile and self.strategy.num_replicas_in_sync > 1 and self.chief:
            print(f"warning: --jit_compile is not applied with --strategy={config.strategy} "
                  f"({self.strategy.num_replicas_in_sync} replicas): the gradients' "
                  "all-reduce cannot be inside a compiled step", file=sys.stderr)
        # A stage's steps in one graph call (the steps themselves XLA-compiled
        # with --jit_compile; the loop, input and collectives are not).
        self._stage_graphs = {stage: tf.function(functools.partial(self._stage_graph, stage))
                              for stage in self._steps}
        self._resident = None     # the split's tensors per replica; False: streaming

    def _steps_per_stage(self):
        cfg, strategy = self.config, self.strategy
        num_videos = self.info.splits[cfg.train_split]["num_videos"] if (
            cfg.train_split in self.info.splits) else 0
        if cfg.batch_size % strategy.num_replicas_in_sync:
            raise UserError(f"--batch_size {cfg.batch_size} is not divisible by the "
                            f"{strategy.num_replicas_in_sync} replicas")
        # One input pipeline per worker; each worker sees its share of videos.
        workers = distribute.num_workers(strategy)
        steps = (num_videos // workers) // (cfg.batch_size // workers)
        if steps < 1:
            raise UserError(f"--batch_size {cfg.batch_size} exceeds the {num_videos} "
                            f"training videos of split '{cfg.train_split}' (the last "
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
        return tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)

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
                l_cvae = self._average(losses.cvae_loss(model.cvae, x, att, self.config.beta,
                                                        batch[s + "_noise"]))
                loss = self.config.cvae_weight * ramp * l_cvae
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
        w_fg, w_bg, w_guide, w_recon = self.weights[s]
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
                if self.config.gam:
                    terms["recon"] = losses.reconstruction_loss(model.cvae, x, att,
                                                                batch[s + "_noise"])
                    recon_ramp = ramp if self.config.ramp_recon else 1.0
                    per_example += w_recon * recon_ramp * terms["recon"]
                loss = self._average(per_example)
            out = {f"{s}/finite": self._apply(s, "model", tape, loss, variables),
                   f"{s}/loss": loss,
                   f"{s}/attention_mean": self._average(tf.reduce_mean(att, -1)),
                   f"{s}/attention": att}                           # [B, n], for histograms
            out.update({f"{s}/{k}": self._average(v) for k, v in terms.items()})
            return out

    # ---- loop ----------------------------------------------------------------

    def restore(self):
        """Resumes from the latest checkpoint, if any; returns the next epoch."""
        latest = self.manager.latest_checkpoint
        if latest:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
            epoch, epochs = int(self.epoch.numpy()), self.config.epochs
            if self.chief and epoch >= epochs:
                print(f"Nothing left to train (epoch {epoch} of {epochs}, {latest})"
                      + ("; evaluating" if self.evaluate_fn else ""))
            elif self.chief:
                print(f"Resuming from {latest} (epoch {epoch})")
        return int(self.epoch.numpy())

    def _dataset(self, epoch, stages):
        """The epoch's batches, stage after stage, as one distributed dataset:
        the next stage's reading and shuffling then starts in the background
        (prefetch) while the current stage's last steps run."""
        # Per-replica batches one pipeline feeds into a stage's steps; a
        # stage's leftover batches must not spill into the next stage.
        batches = (self.steps_per_stage * self.strategy.num_replicas_in_sync
                   // distribute.num_workers(self.strategy))

        def dataset_fn(ctx):
            datasets = [pipeline.train_dataset(self.data_dir, self.info, self.config,
                                               epoch, stage, ctx).take(batches)
                        for stage in stages]
            for ds in datasets[1:]:
                datasets[0] = datasets[0].concatenate(ds)
            return datasets[0]
        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def _inputs(self, epoch, stages):
        """{stage: what its graph draws batches from}: one distributed iterator
        over the epoch's stages when streaming; else the resident tensors and
        the stage's draw (pipeline.stage_order). The first call decides the
        residency (resident.choose) and says so in one line."""
        cfg = self.config
        if self._resident is None:
            hold, line = resident.choose(self.data_dir, self.info, cfg)
            if self.chief:
                print(line, flush=True)
            self._resident = hold and self._load_resident()
        if self._resident is False:
            iterator = iter(self._dataset(epoch, stages))
            return {stage: iterator for stage in stages}
        num_videos = self.info.splits[cfg.train_split]["num_videos"]
        context = distribute.input_context(self.strategy)
        inputs = {}
        for stage in stages:
            order, perm, draw_seed, noise_seed = pipeline.stage_order(
                num_videos, cfg, epoch, stage, context)
            inputs[stage] = (self._resident, order, perm,
                             tf.constant(draw_seed, tf.int64), tf.constant(noise_seed, tf.int64))
        return inputs

    def _load_resident(self):
        """resident.load()'s arrays as tensors on every replica's device."""
        tensors = {k: tf.constant(v) for k, v in
                   resident.load(self.data_dir, self.info, self.config).items()}
        return self.strategy.experimental_distribute_values_from_function(
            lambda ctx: {k: tf.identity(v) for k, v in tensors.items()})

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
        step_fn = (self._steps if strategy.num_replicas_in_sync == 1 else
                   self._step_bodies)[stage]
        if self._resident is False:
            def run(i):
                return strategy.run(step_fn, args=(next(inputs), ramp))
        else:
            data, order, perm, draw_seed, noise_seed = inputs
            b = self.config.batch_size // strategy.num_replicas_in_sync
            local = strategy.num_replicas_in_sync // distribute.num_workers(strategy)

            def replica_step(data, i):
                start = (i * local + tf.cast(distribute.local_replica(strategy), tf.int64)) * b
                batch = resident.draw_batch(data, tf.slice(order, [start], [b]), perm,
                                            draw_seed, noise_seed, self.config)
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

    def _run_stage(self, epoch, stage, progbar, profile, inputs=None):
        """One pass over the training set; returns the stage's mean scalars.

        Its steps run in one graph call (one per step with --debug_numerics,
        which then names the step); `inputs` is what the stage draws from
        (default: self._inputs for this stage); `profile` is called with the
        global steps of each call before it runs."""
        cfg = self.config
        ramp = tf.constant(losses.ramp(epoch, cfg.ramp_epochs, cfg.ramp_chunk_epochs),
                           tf.float32)
        graph = self._stage_graphs[stage]
        calls = ([(i, 1) for i in range(self.steps_per_stage)] if cfg.debug_numerics
                 else [(0, self.steps_per_stage)])
        sums = {}
        with pipeline.reading(self.data_dir, self.info, self.config.train_split):
            if inputs is None:
                inputs = self._inputs(epoch, [stage])[stage]
            for first, count in calls:
                step = int(self.step.numpy())
                profile(range(step, step + count))
                with tf.profiler.experimental.Trace(f"stage{stage}", step_num=step, _r=1):
                    try:
                        out, done, finite, attention = graph(
                            inputs, tf.constant(first), tf.constant(count), ramp)
                    except tf.errors.OutOfRangeError:
                        raise pipeline.fewer_videos_error(
                            self.data_dir, self.info, self.config.train_split) from None
                    except tf.errors.InvalidArgumentError as e:
                        culprit = numerics_culprit(e, self.streams)
                        if culprit is None:
                            raise                       # a data error: see pipeline.reading
                        stream, op = culprit
                        raise NonFiniteError(
                            f"non-finite value in stream {stream}, stage {stage}, epoch "
                            f"{epoch}, step {first}, from {op}: {self._stopped()}") from None
                self.last_attention.update(attention)
                for s in self.streams:
                    if not finite[s]:
                        raise NonFiniteError(
                            f"non-finite loss or gradient in stream {s}, stage {stage}, "
                            f"epoch {epoch}, step {first + int(done) - 1}: {self._stopped()}")
                values = {k: float(v) for k, v in out.items()}
                for k, v in values.items():
                    sums[k] = sums.get(k, 0.0) + v
                if progbar is not None:
                    progbar.add(count, [(k, v / count) for k, v in values.items()
                                        if k.endswith(("/cvae", "/loss"))])
        return {k: v / self.steps_per_stage for k, v in sums.items()}

    def _stopped(self):
        return ("training stopped; the last good checkpoint is kept "
                f"({self.manager.latest_checkpoint or 'none yet'})")

    def train(self):
        """Trains from the latest checkpoint to --epochs; returns the last
        epoch's mean scalars."""
        cfg = self.config
        start = self.restore()
        writer = tf.summary.create_file_writer(
            os.path.join(cfg.model_dir, "train") if self.chief else tempfile.mkdtemp())
        stages = (CVAE_STAGE, MODEL_STAGE) if cfg.gam else (MODEL_STAGE,)
        first_step = int(self.step.numpy())
        profiler = _Profiler(cfg, os.path.join(cfg.model_dir, "train"), range(
            first_step, first_step + max(cfg.epochs - start, 0) * len(stages)
            * self.steps_per_stage), self.chief)
        # A bar on a terminal; piped output gets one line per epoch instead.
        bar = cfg.progress and self.chief and sys.stdout.isatty()
        logs = {}
        for epoch in range(start, cfg.epochs):
            progbar, started = None, time.monotonic()
            if bar:
                print(f"Epoch {epoch + 1}/{cfg.epochs}")
                progbar = keras.utils.Progbar(len(stages) * self.steps_per_stage)
            logs = {}
            with pipeline.reading(self.data_dir, self.info, cfg.train_split):
                inputs = self._inputs(epoch, stages)
            try:
                for stage in stages:
                    logs.update({f"stage{stage}/{k}": v for k, v in self._run_stage(
                        epoch, stage, progbar, profiler.at_steps, inputs[stage]).items()})
            except (UserError, KeyboardInterrupt):
                if progbar is not None:
                    print(flush=True)   # End the bar's line before the error line.
                raise
            if cfg.progress and self.chief and not bar:
                print(f"Epoch {epoch + 1}/{cfg.epochs}: " + ", ".join(
                    f"{k.split('/', 1)[1]} {v:.4f}" for k, v in logs.items()
                    if k.endswith(("/cvae", "/loss"))) + f" ({time.monotonic() - started:.0f} s)",
                    flush=True)
            self.epoch.assign(epoch + 1)
            collapsed = self._check_collapse(epoch + 1, logs)
            with writer.as_default(step=epoch + 1):
                for k, v in logs.items():
                    tf.summary.scalar(k, v)
                for s, reason in collapsed.items():
                    tf.summary.scalar(f"{s}/collapsed", float(reason is not None))
                tf.summary.scalar("ramp", losses.ramp(epoch, cfg.ramp_epochs,
                                                      cfg.ramp_chunk_epochs))
                tf.summary.scalar("learning_rate", cfg.learning_rate)
                for s, att in self.last_attention.items():
                    tf.summary.histogram(f"{s}/attention", att)
            if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0:
                self._evaluate_and_keep_best(epoch + 1, writer)
            self.manager.save(checkpoint_number=epoch + 1)
        profiler.stop()
        writer.flush()
        if not self.chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
        return logs

    def _check_collapse(self, epoch, logs):
        """{stream: reason or None} after `epoch` epochs; warns (chief, one line
        to stderr) when a stream becomes collapsed (health.collapse_reason)."""
        collapsed = {}
        for s in self.streams:
            if f"stage2/{s}/attention_mean" not in logs:
                continue
            reason = health.collapse_reason(logs[f"stage2/{s}/attention_mean"],
                                            logs[f"stage2/{s}/fg"], self.info.num_classes,
                                            epoch)
            if reason and not self.collapsed.get(s) and self.chief:
                print(health.warning_line(s, epoch, reason), file=sys.stderr, flush=True)
            self.collapsed[s] = collapsed[s] = reason
        return collapsed

    def _evaluate_and_keep_best(self, epoch, writer):
        """Evaluates on the validation split (never the test split) and keeps
        the best checkpoint by its mAP in <model_dir>/best. The chief also
        draws the first --num_plots videos of the split as summary images
        (--num_plots=0: none)."""
        split = self.config.validation_split
        # Only the chief keeps checkpoints and writes summaries; evaluation
        # involves no collective ops, so the other workers skip it.
        if self.evaluate_fn is None or split not in self.info.splits or not self.chief:
            return
        metrics = self.evaluate_fn(self.models, split)
        name, score = selection_score(metrics)
        alone = ", ".join(f"{s} {100 * selection_score(m)[1]:.2f}"
                          for s, m in metrics.get("streams", {}).items())
        print(f"Epoch {epoch}: {split} {name} {100 * score:.2f}"
              + (f" ({alone} alone)" if alone else ""), flush=True)
        with writer.as_default(step=epoch):
            for t, m in zip(metrics["tiou_thresholds"], metrics["mAP"]):
                tf.summary.scalar(f"{split}/mAP@{t:g}", m)
            if self.config.num_plots > 0:
                for video_id, image in plots.summary_images(
                        evaluate.stream_modules(self.models), self.data_dir, self.info,
                        split, self.config):
                    tf.summary.image(f"{split}/{video_id}", image)
        best_file = os.path.join(self.best_dir, "best.json")
        best = _read_score(best_file)
        if best is None or score > best:
            with io_utils.atomic_output_dir(self.best_dir, overwrite=True) as tmp:
                self.checkpoint.write(os.path.join(tmp, "ckpt"))
                io_utils.atomic_write_json(os.path.join(tmp, "best.json"),
                                           {"epoch": epoch, "split": split, "score": score})
            print(f"Kept epoch {epoch} in {self.best_dir} ({split} {name} {100 * score:.2f}"
                  + (f", previous best {100 * best:.2f})" if best is not None else ")"),
                  flush=True)


_NUMERICS_OP = re.compile(r'Detected Infinity or NaN in output \d+ of (?:graph|eagerly-executing) '
                          r'op "(\w+)"')
_NUMERICS_NODE = re.compile(r"Detected at node '?([^\s']+?)/CheckNumerics")
_USER_FRAME = re.compile(r"\+ (\S+) \(L(\d+)\) (\S+)\n -> ")


def numerics_culprit(error, streams):
    """(stream, "op NAME (TYPE) created at FILE:LINE (FUNCTION)") for an error
    of tf.debugging.enable_check_numerics (--debug_numerics), else None."""
    text = str(error)
    op_type = _NUMERICS_OP.search(text)
    if op_type is None:
        return None
    node = _NUMERICS_NODE.search(text)
    name = node.group(1) if node else op_type.group(1)
    stream = name.split("/")[0] if name.split("/")[0] in streams else "?"
    frames = _USER_FRAME.findall(text)             # outermost first
    ours = [f for f in frames if "dgam_tf" in f[0]] or frames
    where = f" created at {ours[-1][0]}:{ours[-1][1]} ({ours[-1][2]})" if ours else ""
    return stream, f"op {name} ({op_type.group(1)}){where}"


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


class _Profiler:
    """Starts/stops the TF profiler at the --profile_steps global steps.

    Args:
      steps: the range of global steps this run will train; the chief
        (`verbose`) warns when --profile_steps is not inside it, and says
        where the trace went."""

    def __init__(self, config, logdir, steps, verbose):
        self.range = dgam_flags.profile_range(config) if config.profile_steps else None
        self.logdir = logdir
        self.active = False
        self.verbose = verbose
        if self.range is None or not verbose:
            return
        flag = "--profile_steps=%d,%d" % self.range
        run = f"this run's steps {steps.start}-{steps.stop - 1}" if steps else \
            "this run, which trains no step"
        if self.range[0] not in steps:
            print(f"warning: {flag} starts outside {run}; nothing is profiled",
                  file=sys.stderr)
        elif self.range[1] > steps.stop:
            print(f"warning: {flag} ends after {run}; the trace stops there",
                  file=sys.stderr)

    def at_steps(self, steps):
        """Before a graph call that runs the global `steps` (a range): the
        trace covers the whole calls that START to END - 1 fall in."""
        if self.range is None:
            return
        if self.active and steps.start >= self.range[1]:
            self.stop()
        elif not self.active and steps.start <= self.range[0] < steps.stop:
            tf.profiler.experimental.start(self.logdir)
            self.active = True

    def stop(self):
        if self.active:
            tf.profiler.experimental.stop()
            self.active = False
            if self.verbose:
                print(f"Profile written to {os.path.join(self.logdir, 'plugins', 'profile')}; "
                      f"view it with: tensorboard --logdir {self.logdir} (Profile tab)",
                      flush=True)
