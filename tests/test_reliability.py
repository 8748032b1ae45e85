"""Crash safety: a training run killed with SIGKILL and restarted with the
same command resumes from its last checkpoint and ends with the weights of a
run that was never interrupted, bit for bit. The interrupted run holds the
training split in memory, the uninterrupted one streams it: the two draw the
same batches."""
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from conftest import TINY_MODEL

EPOCHS = 5


def train_command(data_dir, model_dir, residency):
    args = [f"--{k}={v}" for k, v in TINY_MODEL.items() if k not in ("epochs", "progress")]
    return [sys.executable, "-m", "dgam_tf.main", "--mode=train", f"--data_dir={data_dir}",
            f"--model_dir={model_dir}", f"--epochs={EPOCHS}", "--deterministic",
            f"--data_residency={residency}",
            "--noprogress", *args]


def checkpoint_values(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if "OBJECT_GRAPH" not in name}


def test_sigkill_and_restart_equals_uninterrupted_run(tiny_data_dir, tmp_path):
    whole, killed = str(tmp_path / "whole"), str(tmp_path / "killed")
    # The uninterrupted run goes on beside the one that is killed.
    uninterrupted = subprocess.Popen(train_command(tiny_data_dir, whole, "stream"),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    proc = subprocess.Popen(train_command(tiny_data_dir, killed, "memory"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not glob.glob(os.path.join(killed, "checkpoints", "ckpt-2.index")):
        assert proc.poll() is None and time.time() < deadline, "run ended before the kill"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not os.path.exists(os.path.join(killed, "metrics.json"))
    restarted = subprocess.run(train_command(tiny_data_dir, killed, "memory"), capture_output=True,
                               text=True, timeout=300)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    assert uninterrupted.wait(timeout=300) == 0, uninterrupted.stderr.read()[-2000:]
    assert "Resuming from" in restarted.stdout and "(epoch 0)" not in restarted.stdout
    a, b = checkpoint_values(whole), checkpoint_values(killed)
    assert a.keys() == b.keys()
    assert int(a["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == EPOCHS
    assert int(b["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == EPOCHS
    for name in a:   # Bit for bit, optimizer slots included.
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
