"""Whole training epochs on a THUMOS14-scale split, resident and streamed.

Writes a THUMOS14-like training split (benchmarks/input_pipeline.py's
write_dataset: 200 videos, rgb + flow, D = 1024, float16 records, T
log-normal with mean ~350 and longest 2,700) into a temporary folder, then
builds one real Trainer per --data_residency mode (batch 32, n = 400, both
streams, GAM on) and alternates them, epoch by epoch. An epoch is what the
Controller runs per epoch before its summaries and checkpoint:
Trainer.train_epoch, the stages' inputs and both stages (each one graph
call).

Against that, the step time: stage 1 + stage 2 of both streams
(Trainer.step_fns) on one fixed batch already in memory, timed in the same
process between the epochs. An epoch runs steps_per_stage (6) such steps
(12 stage steps). The figure to watch is epoch time / (steps x step time):
1.0 means the epoch is nothing but its steps. The
projection multiplies the median epoch by the paper's 6000 epochs (no
evaluation or checkpoints).

Usage, from the repository root:
  python benchmarks/epoch.py [--epochs=6] [--num_videos=200] [--modes=memory,stream] \\
      [--data_dir=DIR]     (keep the split in DIR, written there if missing)

The first epoch of each mode (tracing, the resident split's loading) is
reported apart and left out of the medians. The last line printed is one
JSON object with the figures.
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from input_pipeline import write_dataset  # noqa: E402

from dgam_tf.config import DataConfig, ModelConfig, TrainConfig  # noqa: E402
from dgam_tf.data import records  # noqa: E402
from dgam_tf.training import trainer as trainer_lib  # noqa: E402

SCHEDULE_EPOCHS = 6000   # the paper's THUMOS14 schedule


def run_epoch(trainer, epoch):
    """Seconds of one epoch as the Controller runs it (without summaries
    and the checkpoint)."""
    start = time.perf_counter()
    trainer.train_epoch(epoch)
    return time.perf_counter() - start


def step_seconds(trainer, batch, repeats=3):
    """Median seconds of stage 1 + stage 2 on `batch` (both streams)."""
    ramp = tf.constant(0.5)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for stage in (trainer_lib.CVAE_STAGE, trainer_lib.MODEL_STAGE):
            float(trainer.step_fns[stage](batch, ramp).finite["rgb"])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=6, help="per mode, the first untimed")
    parser.add_argument("--num_videos", type=int, default=200)
    parser.add_argument("--modes", default="memory,stream")
    parser.add_argument("--data_dir", help="default: a temporary folder")
    args = parser.parse_args()
    modes = args.modes.split(",")
    with tempfile.TemporaryDirectory(prefix="dgam_epoch_") as tmp:
        data_dir = args.data_dir or os.path.join(tmp, "data")
        if not os.path.exists(os.path.join(data_dir, records.METADATA_FILE)):
            write_dataset(data_dir, args.num_videos, 1024)
        info = records.load_info(data_dir)
        trainers = {}
        for mode in modes:
            data = DataConfig(data_dir=data_dir, batch_size=32, num_segments=400,
                              data_residency=mode)
            trainers[mode] = trainer_lib.Trainer(data_dir, info, data, ModelConfig(),
                                                 TrainConfig(progress=False))
        batch = next(iter(trainers[modes[0]].inputs.dataset(0, [trainer_lib.CVAE_STAGE])))
        step_seconds(trainers[modes[0]], batch, repeats=1)      # traces the step functions
        first, epochs, steps = {}, {m: [] for m in modes}, []
        for epoch in range(args.epochs):
            for mode in modes:
                seconds = run_epoch(trainers[mode], epoch)
                if epoch == 0:
                    first[mode] = seconds
                else:
                    epochs[mode].append(seconds)
                print(f"epoch {epoch} {mode}: {seconds:.2f} s", flush=True)
            if epoch:
                steps.append(step_seconds(trainers[modes[0]], batch))
    steps_per_epoch = trainers[modes[0]].steps_per_stage     # of stage 1 + stage 2
    step = statistics.median(steps)
    result = {"num_videos": args.num_videos, "steps_per_epoch": steps_per_epoch,
              "step_s": round(step, 3), "timed_epochs": args.epochs - 1,
              "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()}
    for mode in modes:
        median = statistics.median(epochs[mode])
        result[mode] = {"epoch_s": round(median, 2), "first_epoch_s": round(first[mode], 2),
                        "epoch_over_steps": round(median / (steps_per_epoch * step), 3),
                        "projected_6000_epochs_h": round(median * SCHEDULE_EPOCHS / 3600, 2)}
        print(f"{mode}: epoch {median:.2f} s (median of {args.epochs - 1}; first "
              f"{first[mode]:.2f} s) = {result[mode]['epoch_over_steps']:.2f} x "
              f"{steps_per_epoch} steps x {step:.3f} s; {SCHEDULE_EPOCHS} epochs: "
              f"{result[mode]['projected_6000_epochs_h']:.1f} h")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
