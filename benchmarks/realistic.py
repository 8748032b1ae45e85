"""Fidelity on the realistic synthetic preset, per stream, over seeds.

Trains dgam-tf on THUMOS14-like data with I3D-like features
(dgam_tf/data/realistic.py: 200 training and 210 test videos, D = 1024, 20
classes) with flags/thumos14.cfg's settings on a short schedule, once per
seed and setting, and prints each stream's own mAP next to the fused one,
with the lowest epoch mean of its attention (a collapsed stream sits near 0).

  python benchmarks/realistic.py --study=init   # --initializer pytorch vs glorot
  python benchmarks/realistic.py --study=gam    # DGAM vs --gam=false

Options: --seeds=0,1,2 --epochs=10 --streams=rgb,flow --data_dir=DIR (where
the dataset is generated once; default ~/.cache/dgam_tf/realistic-bench).
Each run is a separate `python -m dgam_tf.main --mode=train`; expect about
1.5 minutes per stream and run on 2 CPU cores.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

STUDIES = {
    "init": [("pytorch (default)", []), ("glorot", ["--initializer=glorot"])],
    "gam": [("DGAM", []), ("w/o GAM", ["--gam=false"])],
}


def train(data_dir, model_dir, seed, epochs, streams, extra):
    """Runs one training; returns (metrics dict, {stream: [attention_mean per epoch]})."""
    cmd = [sys.executable, "-m", "dgam_tf.main", "--mode=train", "--flagfile=flags/thumos14.cfg",
           f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--seed={seed}",
           f"--epochs={epochs}", "--ramp_epochs=1", "--eval_every=0", "--progress=false",
           f"--streams={streams}"] + extra
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(cmd, cwd=root, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(model_dir, "metrics.json")) as f:
        metrics = json.load(f)
    return metrics, attention_means(os.path.join(model_dir, "train"), streams.split(","))


def attention_means(logdir, streams):
    import tensorflow as tf
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(logdir, size_guidance={"tensors": 0})
    acc.Reload()
    return {s: [float(tf.make_ndarray(e.tensor_proto))
                for e in acc.Tensors(f"stage2/{s}/attention_mean")] for s in streams}


def stream_table(metrics, streams):
    """{row: metrics of that row}: each stream alone, and fused with two."""
    if len(streams) == 1:
        return {streams[0]: metrics}
    return {**metrics["streams"], "fused": metrics}


def at(metrics, tiou):
    """mAP (%) at one tIoU threshold."""
    return 100 * metrics["mAP"][[round(t, 2) for t in metrics["tiou_thresholds"]].index(tiou)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--study", choices=sorted(STUDIES), default="init")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--streams", default=None,
                        help="default: flow for --study=init, rgb,flow for --study=gam")
    parser.add_argument("--data_dir", default=os.path.expanduser(
        "~/.cache/dgam_tf/realistic-bench"))
    args = parser.parse_args()
    streams = args.streams or ("flow" if args.study == "init" else "rgb,flow")
    if not os.path.exists(os.path.join(args.data_dir, "dataset.json")):
        from dgam_tf.data import builtin
        print(f"Generating the realistic preset in {args.data_dir} (once)...", flush=True)
        builtin.generate(args.data_dir, preset="realistic", seed=0, overwrite=True)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"study {args.study}: flags/thumos14.cfg, {args.epochs} epochs, ramp 1, "
          f"streams {streams}, seeds {seeds}")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in STUDIES[args.study]:
            for seed in seeds:
                model_dir = os.path.join(tmp, f"{len(rows)}_{seed}")
                metrics, att = train(args.data_dir, model_dir, seed, args.epochs, streams, extra)
                for row, m in stream_table(metrics, streams.split(",")).items():
                    r = rows.setdefault((label, row), {"map5": [], "avg": [], "att": []})
                    r["map5"].append(at(m, 0.5))
                    r["avg"].append(100 * m["average_mAP_0.1:0.7"])
                    if row in att:
                        r["att"].append(min(att[row][1:]))  # after the first epoch
                print(f"  {label}, seed {seed}: " + ", ".join(
                    f"{row} {at(m, 0.5):.1f}" for row, m in
                    stream_table(metrics, streams.split(",")).items()), flush=True)
    print(f"\n| setting | stream | mAP@0.5 mean (min-max) | avg 0.1:0.7 mean (min-max) "
          f"| lowest epoch mean attention (min over seeds) |")
    print("|---|---|---|---|---|")
    for (label, row), r in rows.items():
        def fmt(v):
            return f"{np.mean(v):.1f} ({min(v):.1f}-{max(v):.1f})"
        att = f"{min(r['att']):.3f}" if r["att"] else "-"
        print(f"| {label} | {row} | {fmt(r['map5'])} | {fmt(r['avg'])} | {att} |")


if __name__ == "__main__":
    main()
