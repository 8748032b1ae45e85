"""Throughput of the Keras I3D against the float32 matmul peak of the same run.

Times `I3D.features` (the network up to Mixed_5c and its average pool: what
--mode=extract and the served `i3d` model compute) on random clips of
[clips, frames, size, size, channels] in a tf.function, with random weights
(the weights do not change the work). The work is counted from the traced
graph: every Conv3D costs 2 x (output positions) x (kernel volume) x (input
channels) x (output channels) FLOPs; pools, BatchNorm and ReLU are not
counted. A 16-frame 224 x 224 RGB clip is 55.6 GFLOP by that count (flow:
the first conv has 2 input channels instead of 3).

The float32 matmul peak is measured as benchmarks/train_step.py measures it
(the median of a 4096^3 tf.linalg.matmul, before and after the timing), and
both rates are also given per CPU-second of this process, which moves much
less than wall time when other jobs share the machine.

Usage, from the repository root:
  python benchmarks/i3d.py [--stream=rgb|flow] [--clips=1] [--frames=16]
      [--size=224] [--repeats=5] [--jit_compile] [--mixed_precision=mixed_bfloat16]

The last line printed is one JSON object with the figures.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgam_tf.features import i3d  # noqa: E402
from train_step import matmul_peak_gflops, peak_figures, peak_medians  # noqa: E402


def conv_gflop(concrete_function):
    """GFLOP of the Conv3D ops of a traced function with static shapes."""
    flop = 0
    for op in concrete_function.graph.get_operations():
        if op.type == "Conv3D":
            kernel = op.inputs[1].shape.as_list()  # [kt, kh, kw, in, out]
            positions = np.prod(op.outputs[0].shape.as_list()[:-1])  # B T' H' W'
            flop += 2 * positions * np.prod(kernel)
    return flop / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", choices=sorted(i3d.STREAM_CHANNELS), default="rgb")
    parser.add_argument("--clips", type=int, default=1, help="clips per call")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls")
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--mixed_precision", choices=["mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--peak_size", type=int, default=4096)
    args = parser.parse_args()

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    model = i3d.I3D(args.stream)
    model.build()
    shape = [args.clips, args.frames, args.size, args.size, model.channels]
    clips = tf.random.uniform(shape, -1, 1)
    features = tf.function(model.features, jit_compile=args.jit_compile)
    gflop = conv_gflop(features.get_concrete_function(tf.TensorSpec(shape, tf.float32)))

    peak_before = matmul_peak_gflops(args.peak_size)
    features(clips).numpy()  # trace + warm-up
    wall, cpu = [], []
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        features(clips).numpy()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    peak_after = matmul_peak_gflops(args.peak_size)

    seconds, cpu_seconds = statistics.median(wall), statistics.median(cpu)
    peak, peak_per_cpu = peak_medians(peak_before, peak_after)
    achieved, achieved_per_cpu = gflop / seconds, gflop / cpu_seconds
    result = {
        "stream": args.stream, "clip_shape": shape,
        "gflop_per_call": round(gflop, 2),
        "gflop_per_clip": round(gflop / args.clips, 2),
        "s_per_call": round(seconds, 3),
        "cpu_s_per_call": round(cpu_seconds, 3),
        "clips_per_s": round(args.clips / seconds, 2),
        **peak_figures((achieved, achieved_per_cpu), peak_before, peak_after),
        "repeats": args.repeats,
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"I3D {args.stream} features of {args.clips} x {args.frames} x {args.size}^2 clips: "
          f"{seconds:.2f} s per call median over {args.repeats} ({cpu_seconds:.2f} CPU-s), "
          f"{gflop:.1f} GFLOP -> {achieved:.1f} GFLOP/s, {achieved_per_cpu:.1f} GFLOP per "
          "CPU-second")
    print(f"float32 matmul peak ({args.peak_size}^3): {peak:.1f} GFLOP/s (before "
          f"{peak_before[0]:.1f}, after {peak_after[0]:.1f}), {peak_per_cpu:.1f} GFLOP per "
          f"CPU-second; I3D reaches {100 * achieved / peak:.0f}% of it "
          f"({100 * achieved_per_cpu / peak_per_cpu:.0f}% per CPU-second)")
    print(f"load average {result['load_average_1min']} on {result['cpus']} CPUs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
