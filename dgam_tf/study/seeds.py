"""The runs of a study: one seed (and variant) per folder, trained exactly as
`--mode=train --seed=k --model_dir=<folder>` would, with the test split also
recorded every --eval_every epochs, and the evaluations the report needs
besides (the validation-selected checkpoint, the module swaps).

No TensorFlow at import: a parallel run's child process splits the threads
or GPUs before TensorFlow starts (`train_in_child`)."""
import dataclasses
import json
import os
import sys
from typing import Optional

from dgam_tf import files
from dgam_tf.config import Config
from dgam_tf.errors import UserError
from dgam_tf.mode_config import STUDY_VARIANTS

SETTINGS_FILE = "study_settings.json"
METRICS_FILE = "metrics.json"
VALIDATION_SELECTED_FILE = "metrics_validation_selected.json"
# Config fields that change how a run goes or what it prints, not what it
# learns or how it is scored: left out of the settings two runs must share.
RUN_ONLY = {
    "data": ("seed", "data_residency", "synthetic_cache", "skip_bad_records"),
    "train": ("seed", "progress", "profile_steps", "debug_numerics", "keep_checkpoints",
              "num_plots", "cpu_devices"),
    "evaluation": ("checkpoint", "attention_checkpoint", "classifier_checkpoint",
                   "output_metrics_json", "num_plots", "plot_videos", "gt_json",
                   "predictions_json", "subset"),
}
SECTIONS = ("data", "model", "train", "localization", "evaluation")
HELD_EXIT = 3   # A child's exit status: another process holds its run's folder.


@dataclasses.dataclass(frozen=True)
class Run:
    """One training of a study.

    Attributes:
      variant: a STUDY_VARIANTS name, or None (the flags as given).
      seed: its --seed.
      folder: its --model_dir, <model_dir>[/<variant>]/seed_<seed>.
      cfg: the Config of `--mode=train` in that folder.
    """
    variant: Optional[str]
    seed: int
    folder: str
    cfg: Config

    @property
    def name(self):
        return f"{self.variant}/seed_{self.seed}" if self.variant else f"seed_{self.seed}"


def plan(cfg):
    """[Run] of a study's Config: seeds in order, each under every variant."""
    runs = []
    for seed in cfg.study.seeds:
        for variant in cfg.study.variants or (None,):
            folder = os.path.join(cfg.model_dir, *([variant] if variant else []),
                                  f"seed_{seed}")
            runs.append(Run(variant, seed, folder, run_config(cfg, variant, seed, folder)))
    return runs


def run_config(cfg, variant, seed, folder):
    """The --mode=train Config of one run: the study's, with its seed, folder
    and variant (metrics in the folder, the latest checkpoint evaluated)."""
    run = dataclasses.replace(
        cfg, mode="train", model_dir=folder, data=dataclasses.replace(cfg.data, seed=seed),
        train=dataclasses.replace(cfg.train, seed=seed),
        evaluation=dataclasses.replace(cfg.evaluation, output_metrics_json=None,
                                       checkpoint="latest", attention_checkpoint=None,
                                       classifier_checkpoint=None))
    if variant:
        section, field, value = STUDY_VARIANTS[variant]
        run = dataclasses.replace(run, **{section: dataclasses.replace(
            getattr(run, section), **{field: value})})
    return run


def settings(cfg):
    """{section.field: value} of what a run learns from and is scored by
    (JSON values), and its seed."""
    out = {"seed": cfg.data.seed}
    for section in SECTIONS:
        values = dataclasses.asdict(getattr(cfg, section))
        out.update({f"{section}.{k}": v for k, v in values.items()
                    if k not in RUN_ONLY.get(section, ())})
    return json.loads(json.dumps(out))


def check_settings(run):
    """Refuses a run folder trained with other settings than `run.cfg`, or
    holding a training that is not a study's.

    Raises:
      UserError: one line naming the folder and the first differing setting.
    """
    path = os.path.join(run.folder, SETTINGS_FILE)
    if not files.exists(path):
        if files.exists(os.path.join(run.folder, "model.json")):
            raise UserError(f"{run.folder} holds a training that is not this study's (no "
                            f"{SETTINGS_FILE}); move it away or use another --model_dir")
        return
    old, new = files.read_json(path, "study settings"), settings(run.cfg)
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        first = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise UserError(f"{run.folder} was trained with other settings: {first} = "
                        f"{json.dumps(old.get(first))} there, {json.dumps(new.get(first))} "
                        f"here{more}; use the same flags or another --model_dir")


def is_finished(run):
    """The run has its final test metrics (it trained to --epochs)."""
    return files.exists(os.path.join(run.folder, METRICS_FILE))


def train(run):
    """Trains and evaluates a run as --mode=train does in its folder (resuming
    its checkpoint), recording the test split every --eval_every epochs.

    Raises:
      lock.ModelDirHeld: another process is training it.
    """
    from dgam_tf.training import train_lib
    path = os.path.join(run.folder, SETTINGS_FILE)
    if not files.exists(path):
        files.atomic_write_json(path, settings(run.cfg))
    train_lib.run(run.cfg, record_test=True)


def train_in_child(run, threads, gpus, log_path):
    """A parallel run's process (multiprocessing target): TensorFlow on
    `threads` intra- and inter-op threads and the GPUs `gpus` (a
    CUDA_VISIBLE_DEVICES value, or None for all), everything it prints in
    `log_path`. Exits 0 when trained, HELD_EXIT when another process holds
    the folder, 1 after an error line in the log."""
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if run.cfg.tf_logs else "3")
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
        os.dup2(log, stream.fileno())
    from dgam_tf.training import lock
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    try:
        train(run)
    except lock.ModelDirHeld:
        sys.exit(HELD_EXIT)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
    sys.stdout.flush()


def evaluate_restored(run, out_path, **eval_changes):
    """Evaluates the test split with a run's models restored as --mode=eval
    does (float32, `eval_changes` to its EvalConfig, e.g. checkpoint="best"),
    and writes the metrics without detections to `out_path`; an existing
    `out_path` is reused. Returns the metrics."""
    if files.exists(out_path):
        return files.read_json(out_path, "study evaluation")
    import keras
    from dgam_tf.evaluation import evaluate
    keras.mixed_precision.set_dtype_policy("float32")
    cfg = run.cfg
    metrics = evaluate.evaluate_model_dir(
        run.folder, cfg.data, cfg.localization,
        dataclasses.replace(cfg.evaluation, **eval_changes))
    metrics.pop("results")
    files.atomic_write_json(out_path, metrics)
    return metrics


def evaluate_validation_selected(run):
    """The test metrics of the run's best/ checkpoint (kept by validation),
    in VALIDATION_SELECTED_FILE; None without one (no validation split)."""
    if not files.exists(os.path.join(run.folder, "best", "best.json")):
        return None
    return evaluate_restored(run, os.path.join(run.folder, VALIDATION_SELECTED_FILE),
                             checkpoint="best")


def evaluate_swap(attention_run, classifier_run, out_path):
    """The test metrics of attention_run's attention with classifier_run's
    classifier (the paper's module swap; last checkpoints), cached in out_path."""
    return evaluate_restored(attention_run, out_path,
                             attention_checkpoint=attention_run.folder,
                             classifier_checkpoint=classifier_run.folder)


def write_hparams(run):
    """The run's seed and variant as TensorBoard HParams, once, in its folder
    (the HParams dashboard then lists a study's runs side by side with the
    mAPs of their train/ summaries)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import api as hparams
    if tf.io.gfile.glob(os.path.join(run.folder, "events.out.tfevents.*")):
        return
    writer = tf.summary.create_file_writer(run.folder)
    with writer.as_default():
        hparams.hparams({"seed": run.seed, "variant": run.variant or "as given"},
                        trial_id=run.name)
    writer.close()
