"""tf.distribute: MirroredStrategy over two logical CPUs matches one device
on the same global batch, with streamed or resident data (the two
bit-identical: the replicas get the same halves of the batch); two workers on
127.0.0.1 complete a run."""
import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from conftest import TINY_MODEL

MIRRORED_SCRIPT = textwrap.dedent("""
    import json, sys
    import tensorflow as tf
    from dgam_tf.training import distribute
    distribute.split_cpu(2)
    from dgam_tf import flags as dgam_flags
    from dgam_tf.data import records
    from dgam_tf.training import trainer as trainer_lib

    tf.config.experimental.enable_op_determinism()
    data_dir, overrides = sys.argv[1], json.loads(sys.argv[2])
    info = records.load_info(data_dir)
    out = {}
    for strategy, residency in json.loads(sys.argv[4]):
        config = dgam_flags.parse_args(data_dir=data_dir, model_dir=sys.argv[3] + strategy,
                                       strategy=strategy, data_residency=residency,
                                       **overrides)
        tr = trainer_lib.Trainer(data_dir, info, config.data, config.model, config.train)
        # One step per stage, each from the initial weights: the losses of
        # the same global batch, before float rounding can compound through
        # Adam updates.
        tr.steps_per_stage = 1
        initial = {s: m.get_weights() for s, m in tr.models.items()}
        stage1 = tr.train_stage(1, 1)
        for s, m in tr.models.items():
            m.set_weights(initial[s])
        stage2 = tr.train_stage(1, 2)
        out[strategy + "/" + residency] = {"replicas": tr.strategy.num_replicas_in_sync,
                         "stage1": stage1, "stage2": stage2}
    print(json.dumps(out))
""")


def test_mirrored_over_two_cpus_matches_one_device(tiny_data_dir, tmp_path):
    overrides = json.dumps({k: v for k, v in TINY_MODEL.items() if k != "progress"})
    # One device in one process, mirrored in another, side by side.
    procs = [subprocess.Popen([sys.executable, "-c", MIRRORED_SCRIPT, tiny_data_dir, overrides,
                               str(tmp_path / "m"), json.dumps(runs)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for runs in ([["default", "stream"]],
                          [["mirrored", "stream"], ["mirrored", "memory"]])]
    out = {}
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-3000:]
        out.update(json.loads(stdout.strip().splitlines()[-1]))
    assert out["default/stream"]["replicas"] == 1 and out["mirrored/stream"]["replicas"] == 2
    assert out["mirrored/stream"] == out["mirrored/memory"]   # (one device: test_reliability)
    for stage in ("stage1", "stage2"):
        single, mirrored = out["default/stream"][stage], out["mirrored/stream"][stage]
        assert single.keys() == mirrored.keys() and single
        for key in single:
            np.testing.assert_allclose(mirrored[key], single[key], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{stage} {key}")


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_workers_on_loopback_complete_a_run(tiny_data_dir, tmp_path):
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    args = [f"--data_dir={tiny_data_dir}", "--strategy=multi_worker", "--epochs=1",
            "--noprogress", "--test_min_segments=4", "--test_max_segments=40"]
    args += [f"--{k}={v}" for k, v in TINY_MODEL.items() if k not in ("epochs", "progress")]
    procs = []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "dgam_tf.main", "--mode=train",
             f"--model_dir={tmp_path / f'w{index}'}", *args],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    # Only the chief (worker 0) evaluates and writes metrics.
    assert "Detection mAP" in outputs[0][0]
    assert (tmp_path / "w0" / "metrics.json").exists()
    assert (tmp_path / "w0" / "checkpoints" / "checkpoint").exists()
