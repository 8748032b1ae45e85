"""--mode=study: its numbers against the runs' own metrics files (computed
here with numpy and statistics), resuming a killed study, two processes
sharing one, the refusal of a run trained otherwise, the test-selected label."""
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys

import numpy as np
import pytest

from conftest import TINY_MODEL, tiny_config, train
from dgam_tf.errors import UserError
from dgam_tf.study import runner, summary
from dgam_tf.training import lock, trainer as trainer_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY = dict(mode="study", seeds=["0", "1"], eval_every=1, deterministic=True, num_plots=0)


def study_config(data_dir, model_dir, **overrides):
    return tiny_config(data_dir, model_dir, **{**STUDY, **overrides})


def run_study(cfg):
    """runner.run(cfg) and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        runner.run(cfg)
    return out.getvalue()


@pytest.fixture(scope="module")
def killed_study(tiny_data_dir, tmp_path_factory):
    """A two-seed study killed in seed 1's second epoch, then run again:
    {model_dir, first and rerun: their output, killed: seed_1's latest
    checkpoint after the kill, seed_0_mtime: of its metrics.json then}."""
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    model_dir = str(tmp_path_factory.mktemp("study") / "s")
    cfg = study_config(tiny_data_dir, model_dir)
    train_epoch = trainer_lib.Trainer.train_epoch

    def killed_in_seed_1(self, epoch, *args):
        if self.train_cfg.seed == 1 and epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(self, epoch, *args)

    first = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(first):
        patch.setattr(trainer_lib.Trainer, "train_epoch", killed_in_seed_1)
        with pytest.raises(KeyboardInterrupt):
            runner.run(cfg)
    seed_1 = os.path.join(model_dir, "seed_1")
    assert not os.path.exists(os.path.join(seed_1, "metrics.json"))
    killed = dict(model_dir=model_dir, first=first.getvalue(),
                  killed=tf.train.latest_checkpoint(os.path.join(seed_1, "checkpoints")),
                  seed_0_mtime=os.stat(os.path.join(model_dir, "seed_0", "metrics.json")
                                       ).st_mtime_ns)
    return dict(killed, rerun=run_study(cfg))


def test_a_killed_study_reuses_finished_seeds_and_resumes_the_other(killed_study):
    model_dir, rerun = killed_study["model_dir"], killed_study["rerun"]
    assert "seed_1: training" in killed_study["first"]
    assert killed_study["killed"].endswith("ckpt-1")
    assert "seed_0: finished earlier, reused" in rerun
    assert "seed_0: training" not in rerun
    assert "Resuming from" in rerun and "(epoch 1)" in rerun
    assert (os.stat(os.path.join(model_dir, "seed_0", "metrics.json")).st_mtime_ns
            == killed_study["seed_0_mtime"])
    assert os.path.exists(os.path.join(model_dir, "study.json"))
    assert os.path.getsize(os.path.join(model_dir, "study.png")) > 1000


def _fused_at(metrics, tiou):
    return metrics["mAP"][[round(t, 2) for t in metrics["tiou_thresholds"]].index(tiou)]


def _read(path):
    with open(path) as f:
        return json.load(f)


def test_study_gives_mean_and_sd_of_the_single_runs(killed_study):
    model_dir = killed_study["model_dir"]
    study = _read(os.path.join(model_dir, "study.json"))
    for rule in summary.RULES:
        per_seed = []
        for seed in (0, 1):
            folder = os.path.join(model_dir, f"seed_{seed}")
            last = _read(os.path.join(folder, "metrics.json"))
            if rule == "last":
                chosen = last
            elif rule == "validation-selected":
                chosen = _read(os.path.join(folder, "metrics_validation_selected.json"))
            else:   # the best fused mAP@0.5 of the recorded test evaluations and the last
                record = _read(os.path.join(folder, "test_evaluations.json"))["evaluations"]
                chosen = max(record + [last], key=lambda m: _fused_at(m, 0.5))
            per_seed.append(chosen)
        got = study["results"]["as given"][rule]
        for row in ("rgb", "flow", "fused"):
            rows = [m["streams"][row] if row != "fused" else m for m in per_seed]
            at_05 = [_fused_at(m, 0.5) for m in rows]
            cell = got[row]["mAP@0.5"]
            assert cell["mean"] == pytest.approx(np.mean(at_05), abs=1e-12)
            assert cell["sd"] == pytest.approx(statistics.stdev(at_05), abs=1e-12)
            assert (cell["min"], cell["max"]) == (min(at_05), max(at_05))
            average = [np.mean(m["mAP"][:7]) for m in rows]   # tIoU 0.1 ... 0.7
            assert got[row]["average_mAP_0.1:0.7"]["mean"] == pytest.approx(np.mean(average))


def test_a_study_seed_is_the_single_training_of_that_seed(killed_study, tiny_data_dir,
                                                          tmp_path):
    single = train(tiny_config(tiny_data_dir, tmp_path / "single", seed=1, eval_every=1),
                   evaluate=True)
    seed_1 = _read(os.path.join(killed_study["model_dir"], "seed_1", "metrics.json"))
    np.testing.assert_allclose(seed_1["mAP"], single["mAP"], atol=1e-6)


def test_gathering_refuses_a_seed_trained_with_other_settings(killed_study, tiny_data_dir):
    cfg = study_config(tiny_data_dir, killed_study["model_dir"], learning_rate=0.002)
    with pytest.raises(UserError) as error:
        runner.run(cfg)
    message = str(error.value)
    assert "\n" not in message
    assert "seed_0" in message and "train.learning_rate = 0.001 there, 0.002 here" in message


def test_the_test_selected_number_is_labelled_wherever_it_appears(killed_study):
    model_dir, rerun = killed_study["model_dir"], killed_study["rerun"]
    table = rerun[rerun.index("Study of 2 seeds"):]
    header = table.splitlines()[1]
    assert header.split() == ["last", "validation-selected", "test-selected"]
    assert summary.TEST_SELECTED_CAVEAT in table
    study = _read(os.path.join(model_dir, "study.json"))
    assert "test-selected" in study["caveat"] and "optimistic" in study["caveat"]
    assert set(study["results"]["as given"]) == set(summary.RULES)


def test_two_processes_split_the_seeds_without_overlap(tiny_data_dir, tmp_path):
    # This process holds seed_0 (as a study training it would); another
    # process, with --study_parallel=2, must skip seed_0 and train seed_1;
    # this process then trains seed_0, reuses seed_1 and gathers both.
    model_dir = str(tmp_path / "shared")
    flags = [f"--data_dir={tiny_data_dir}", f"--model_dir={model_dir}",
             "--mode=study", "--seeds=0,1", "--eval_every=0", "--study_parallel=2"] + [
        f"--{k}={str(v).lower()}" for k, v in TINY_MODEL.items()]
    with lock.model_dir_lock(os.path.join(model_dir, "seed_0")):
        other = subprocess.run([sys.executable, "-m", "dgam_tf.main"] + flags, cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True,
                               text=True, check=True).stdout
    assert "seed_0: another process is training it; skipped" in other
    assert "seed_1: done" in other
    assert "Not gathered: seed_0 is being trained by another process" in other
    cfg = study_config(tiny_data_dir, model_dir, eval_every=0, deterministic=False)
    here = run_study(cfg)
    assert "seed_0: training" in here and "seed_1: finished earlier, reused" in here
    assert _read(os.path.join(model_dir, "study.json"))["seeds"] == [0, 1]


def test_the_19_class_ap_leaves_baseballpitch_out():
    ap = {"BaseballPitch": [0.0, 0.0], "Diving": [0.9, 0.6], "Shotput": [0.5, 0.2]}
    metrics = {"tiou_thresholds": [0.3, 0.5], "mAP": [0.2, 0.4], "ap_per_class": ap}
    values = summary.metric_values(metrics)
    assert values[summary.NO_BASEBALL] == pytest.approx((0.6 + 0.2) / 2)
    assert (values["mAP@0.3"], values["mAP@0.5"]) == (0.2, 0.4)


@pytest.mark.parametrize("flag, value, message", [
    ("study_parallel", 0, "--study_parallel must be at least 1"),
    ("study_variants", ["gam"], "--study_variants must be two or more"),
    ("study_variants", ["gam", "fast"], "--study_variants must be two or more"),
    ("seeds", ["0", "x"], "--seeds must be integers"),
    ("seeds", ["1", "1"], "--seeds must be distinct")])
def test_study_flags_are_checked(flag, value, message):
    from dgam_tf import flags
    with pytest.raises(UserError, match=message):
        flags.parse_args(["--mode=study"], **{flag: value})
