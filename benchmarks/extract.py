"""Feature extraction speed: seconds of video per second of wall time, by stage.

On one generated video (a moving random texture, MJPG at 30 fps, --width x
--height, --seconds long), with random-weight I3D checkpoints under
DeepMind's names and the default recipe (25 fps, short side 256, crop 224,
16-frame clips), it times, each alone and then together:

  decode    video.Decoded + the resize to the short side (pipeline.decode_clips)
  flow      the clips' TV-L1 flow inputs, on a thread per core (pipeline.ClipInputs)
  i3d rgb   the RGB network on prepared clips, --clips_per_batch a call
  i3d flow  the flow network, the same way
  end to end  pipeline.extract (stages overlapped), both streams

the networks and the end-to-end run in float32 and under --mixed_precision.
It prints the ratio of the slowest stage's rate to the end-to-end rate (1.0:
the overlap hides every other stage; the issue's target is within 1.15), and
the I3D's GFLOP/s (convolutions counted analytically on the clip's shapes:
about 55.6 GFLOP per 16 x 224 x 224 RGB clip) against the float32 matmul
peak measured in the same run (benchmarks/train_step.py's measurement).

Usage, from the repository root (pip install -e '.[video]'):
    python benchmarks/extract.py [--seconds=1.28] [--mixed_precision=mixed_bfloat16]
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cv2  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgam_tf.mode_config import ExtractConfig  # noqa: E402
from dgam_tf.features import i3d, pipeline, weights  # noqa: E402
from train_step import matmul_peak_gflops  # noqa: E402


def write_video(path, seconds, width, height, fps=30):
    """A random texture drifting 2 px a frame right and 1 px down."""
    texture = np.random.default_rng(0).integers(0, 256, (2 * height, 2 * width, 3), np.uint8)
    texture = cv2.GaussianBlur(texture, (0, 0), 1.5)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i in range(int(round(seconds * fps))):
        writer.write(texture[i:i + height, 2 * i:2 * i + width])
    writer.release()


def conv_gflop(stream, shape):
    """Multiply-adds x 2 of every convolution up to Mixed_5c on one clip [T, H, W, C]."""
    model = i3d.I3D(stream)
    model.build()
    total = 0
    for unit in model.units.values():
        def counting(x, unit=unit, call=unit.call):
            nonlocal total
            y = call(x)
            total += 2 * int(np.prod(y.shape[1:])) * int(np.prod(unit.kernel_size)) * x.shape[-1]
            return y
        unit.call = counting
    model.end_points(tf.zeros((1,) + tuple(shape)))
    return total / 1e9


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.28, help="video length")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--clips_per_batch", type=int, default=2)
    parser.add_argument("--mixed_precision", default="mixed_bfloat16",
                        choices=["mixed_float16", "mixed_bfloat16"])
    args = parser.parse_args()
    cfg = ExtractConfig(clips_per_batch=args.clips_per_batch)
    tmp = tempfile.mkdtemp(prefix="extract_bench_")
    path = os.path.join(tmp, "video.avi")
    write_video(path, args.seconds, args.width, args.height)
    checkpoints = {}
    for stream in ("rgb", "flow"):
        checkpoints[stream] = os.path.join(tmp, stream, "model.ckpt")
        weights.save_deepmind_checkpoint(i3d.I3D(stream), checkpoints[stream])

    peak_before, _ = matmul_peak_gflops()
    seconds_decode, clips = timed(lambda: [c for c in pipeline.decode_clips("v", path, cfg)
                                           if isinstance(c, pipeline.Clip)])
    video_seconds = len(clips) * cfg.segment_frames / cfg.fps
    flow_inputs = pipeline.ClipInputs(cfg, ("flow",))
    rgb_inputs = pipeline.ClipInputs(cfg, ("rgb",))
    with pipeline.concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:
        seconds_flow, flows = timed(lambda: list(pool.map(flow_inputs, clips)))
    inputs = {"rgb": np.stack([rgb_inputs(c)["rgb"] for c in clips]),
              "flow": np.stack([f["flow"] for f in flows])}
    rates = {"decode": video_seconds / seconds_decode, "flow": video_seconds / seconds_flow}
    gflop = {s: conv_gflop(s, inputs[s].shape[1:]) for s in ("rgb", "flow")}
    gflops = {}
    for policy in (None, args.mixed_precision):
        label = policy or "float32"
        networks = pipeline.FeatureNetworks(checkpoints, cfg, policy)
        for stream in ("rgb", "flow"):
            batches = [inputs[stream][i:i + cfg.clips_per_batch]
                       for i in range(0, len(clips), cfg.clips_per_batch)]
            networks(stream, batches[0])   # trace + warm-up
            seconds, _ = timed(lambda: [networks(stream, b) for b in batches])
            rates[f"i3d {stream} ({label})"] = video_seconds / seconds
            gflops[f"i3d {stream} ({label})"] = gflop[stream] * len(clips) / seconds
        seconds, _ = timed(lambda: list(pipeline.extract([("v", path)], cfg, networks)))
        rates[f"end to end ({label})"] = video_seconds / seconds
    peak_after, _ = matmul_peak_gflops()
    peak = (peak_before + peak_after) / 2

    print(f"{video_seconds:.2f} s of {args.width}x{args.height} video, {len(clips)} clips, "
          f"{os.cpu_count()} CPUs, GPU: {bool(tf.config.list_physical_devices('GPU'))}")
    print(f"{'stage':<28} {'video s / wall s':>16} {'GFLOP/s':>9} {'of peak':>8}")
    for name, rate in rates.items():
        extra = (f" {gflops[name]:>9.1f} {gflops[name] / peak:>8.2f}" if name in gflops else "")
        print(f"{name:<28} {rate:>16.3f}{extra}")
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s (before {peak_before:.1f}, after "
          f"{peak_after:.1f}); I3D conv work per clip: rgb {gflop['rgb']:.1f}, flow "
          f"{gflop['flow']:.1f} GFLOP")
    for label in ("float32", args.mixed_precision):
        stages = [rates["decode"], rates["flow"], rates[f"i3d rgb ({label})"],
                  rates[f"i3d flow ({label})"]]
        print(f"{label}: slowest stage alone / end to end = "
              f"{min(stages) / rates[f'end to end ({label})']:.2f}x wall time "
              f"(target <= 1.15); sum of stages / end to end = "
              f"{sum(1 / r for r in stages) * rates[f'end to end ({label})']:.2f}")


if __name__ == "__main__":
    main()
