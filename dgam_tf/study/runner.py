"""--mode=study: trains every seed (and variant) of --seeds that is not
finished, here or in --study_parallel child processes, skipping those
another process holds, then, once all are finished, gathers them into
<model_dir>/study.json, study.png and the console tables.

Runs are shared through their folders: a finished run is reused, an
interrupted one resumes from its checkpoint, and the model-dir lock keeps
two processes (or machines, with --model_dir on gs://) off one run, so the
same command started twice, or with --seeds=k on each machine, splits the
work; whichever finishes last gathers."""
import multiprocessing
import multiprocessing.connection
import os
import tempfile

from dgam_tf import files
from dgam_tf.errors import UserError
from dgam_tf.study import figure, seeds as seeds_lib, summary
from dgam_tf.training import actions, lock, train_lib

STUDY_FILE, FIGURE_FILE, SWAP_DIR = "study.json", "study.png", "module_swap"


def run(cfg):
    """Trains what is left of the study, then gathers it if it is complete."""
    runs = seeds_lib.plan(cfg)
    for r in runs:
        seeds_lib.check_settings(r)
    for r in runs:
        if seeds_lib.is_finished(r):
            print(f"{r.name}: finished earlier, reused ({r.folder})", flush=True)
    pending = [r for r in runs if not seeds_lib.is_finished(r)]
    if cfg.study.parallel > 1 and len(pending) > 1:
        _train_parallel(pending, cfg.study.parallel)
    else:
        for r in pending:
            _train_here(r)
    unfinished = [r.name for r in runs if not seeds_lib.is_finished(r)]
    if unfinished:
        print(f"Not gathered: {', '.join(unfinished)} "
              f"{'is' if len(unfinished) == 1 else 'are'} being trained by another process; "
              "run this command again once they are done", flush=True)
        return None
    return gather(cfg, runs)


def _train_here(run):
    if seeds_lib.is_finished(run):     # by another process, meanwhile
        return
    print(f"{run.name}: training in {run.folder}", flush=True)
    try:
        seeds_lib.train(run)
    except lock.ModelDirHeld:
        print(f"{run.name}: another process is training it; skipped", flush=True)


def _train_parallel(pending, parallel):
    """Trains `pending` runs, `parallel` at a time, each in a child process
    (seeds.train_in_child) with the CPU threads, or the GPUs, split between
    them; its output goes to <folder>/train.log."""
    import tensorflow as tf
    context = multiprocessing.get_context("spawn")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, cores // parallel)
    gpus = [str(i) for i in range(len(tf.config.list_physical_devices("GPU")))]
    queue, running, failed = list(pending), {}, []
    try:
        while queue or running:
            free = [slot for slot in range(parallel) if slot not in running]
            while queue and free and not failed:
                r = queue.pop(0)
                if seeds_lib.is_finished(r):
                    continue
                if lock.is_held(r.folder):     # spares a child process its start-up
                    print(f"{r.name}: another process is training it; skipped", flush=True)
                    continue
                slot = free.pop(0)
                log = _log_path(r)
                child = context.Process(target=seeds_lib.train_in_child, args=(
                    r, threads, ",".join(gpus[slot::parallel]) if gpus else None, log))
                child.start()
                running[slot] = (r, child, log)
                print(f"{r.name}: training in {r.folder} (log: {log})", flush=True)
            if not running:
                break
            multiprocessing.connection.wait([c.sentinel for _, c, _ in running.values()])
            for slot, (r, child, log) in list(running.items()):
                if child.exitcode is None:
                    continue
                del running[slot]
                if child.exitcode == seeds_lib.HELD_EXIT:
                    print(f"{r.name}: another process is training it; skipped", flush=True)
                elif child.exitcode == 0:
                    print(f"{r.name}: done", flush=True)
                else:
                    failed.append((r, log))
    finally:
        for _, child, _ in running.values():
            child.terminate()
            child.join()
    if failed:
        r, log = failed[0]
        raise UserError(f"{r.name} failed: {_last_line(log)} (log: {log})")


def _log_path(run):
    """<folder>/train.log, or a local file for a remote folder."""
    if files.is_remote(run.folder):
        return os.path.join(tempfile.gettempdir(), f"dgam_study_{run.name.replace('/', '_')}.log")
    os.makedirs(run.folder, exist_ok=True)
    return os.path.join(run.folder, "train.log")


def _last_line(path):
    with open(path, errors="replace") as f:
        lines = [line.strip() for line in f if line.strip()]
    return lines[-1] if lines else "no output"


def gather(cfg, runs):
    """Reads every run's evaluations (evaluating the validation-selected
    checkpoint and the module swaps where missing), writes study.json and
    study.png to --model_dir and each run's HParams, prints the tables;
    returns the study object."""
    evaluations = {}
    for r in runs:
        folder = r.folder
        last = files.read_json(os.path.join(folder, seeds_lib.METRICS_FILE), "metrics")
        record = actions.read_test_record(os.path.join(folder, train_lib.TEST_RECORD_FILE))
        epoch, selected = summary.test_selected(last, record, r.cfg.train.epochs)
        evaluations.setdefault(r.variant or "as given", {})[r.seed] = {
            "last": last, "validation-selected": seeds_lib.evaluate_validation_selected(r),
            "test-selected": selected, "epoch": epoch}
        seeds_lib.write_hparams(r)
    study = summary.summarize(evaluations, _swaps(cfg, runs))
    study["model_dir"] = files.abspath(cfg.model_dir)
    study["runs"] = {r.name: files.abspath(r.folder) for r in runs}
    files.atomic_write_json(os.path.join(cfg.model_dir, STUDY_FILE), study)
    figure.write(study, os.path.join(cfg.model_dir, FIGURE_FILE))
    print(summary.format_study(study, cfg.model_dir))
    print(f"Wrote {os.path.join(cfg.model_dir, STUDY_FILE)} and "
          f"{os.path.join(cfg.model_dir, FIGURE_FILE)}; per-run TensorBoard: "
          f"tensorboard --logdir {cfg.model_dir}")
    return study


def _swaps(cfg, runs):
    """{O/O, O/N, N/O, N/N: {seed: metrics}} with variants gam and no_gam
    (O = no_gam, N = gam; attention/classifier), else None."""
    if not {"gam", "no_gam"} <= set(cfg.study.variants):
        return None
    by_key = {(r.variant, r.seed): r for r in runs}
    letters = {"O": "no_gam", "N": "gam"}
    swaps = {}
    for combination in summary.SWAPS:
        attention, classifier = (letters[x] for x in combination.split("/"))
        swaps[combination] = {}
        for seed in cfg.study.seeds:
            a, c = by_key[(attention, seed)], by_key[(classifier, seed)]
            swaps[combination][seed] = (
                files.read_json(os.path.join(a.folder, seeds_lib.METRICS_FILE), "metrics")
                if a is c else seeds_lib.evaluate_swap(a, c, os.path.join(
                    cfg.model_dir, SWAP_DIR, f"seed_{seed}_{combination.replace('/', '')}.json")))
    return swaps
