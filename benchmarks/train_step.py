"""Time of one DGAM training step on the paper's shapes (docs/performance.md).

One step = stage 1 (CVAE update, attention frozen) + stage 2 (attention and
classifier update, CVAE frozen) of ONE stream, run through the real
`Trainer.step_fns` tf.functions of both stages (built with the
Trainer's own --jit_compile setting) on random batches of the pipeline's
structure: {stream: [B, n, D], stream + "_noise": [B, n, L], "labels": [B, C]}.
The Trainer is constructed on a tiny records dataset of the right D written
to a temporary folder (the batches themselves do not come from it, so this
measures the step, not the input pipeline: see benchmarks/input_pipeline.py).

Analytic FLOPs. A dense layer `in -> out` applied to `N = B * n` segments
costs `2 N in out` FLOPs forward; backward costs another `2 N in out` for the
kernel gradient and `2 N in out` for the gradient of its input, each only
when needed. With `Ha` attention hidden units, `Hc` CVAE hidden units, `L`
latent size and `C + 1` classes:

  stage 1 (CVAE), attention forward only (lambda is a constant here):
    attention  F_att = 2N (D Ha + Ha)
    encoder    F_enc = 2N ((D+1) Hc + Hc Hc + Hc 2L)      on concat(x, lambda)
    decoder    F_dh  = 2N ((L+1) Hc + Hc Hc)              hidden layers, on concat(z, lambda)
               F_out = 2N Hc D, F_g = 2N Hc Hc            its D-wide output layer W: the MSE
               is expanded (CVAE.decoder_mse) into x W^T [N, Hc] and h (W W^T) [N, Hc];
               the reconstruction h W is never formed
    forward  = F_att + F_enc + F_dh + F_out + F_g
    backward = F_enc                      (encoder kernel gradients)
             + 2N (Hc Hc + Hc 2L)         (encoder input gradients, layers 2-3;
                                           x and lambda need none)
             + 2 F_dh                     (decoder hidden kernel + input gradients)
             + F_out + 2 F_g              (W's gradient x^T h; h's and W W^T's)
  stage 2 (attention + classifier), CVAE frozen:
    forward  = F_att + F_tcam + F_dh + F_out + F_g + F_cls,   F_tcam = 2N D (C+1)
               (T-CAM x W^T of the guide loss), F_cls = 2 * 2B D (C+1)
               (classifier on f_fg and f_bg)
    backward = F_att + 2N Ha              (attention kernel gradients and the
                                           gradient into its hidden layer;
                                           x needs none)
             + F_dh + F_g                 (decoder input gradients only: its
                                           kernels are frozen; the gradient
                                           reaches lambda through z and the
                                           lambda input)
             + 2 F_cls                    (classifier kernel + input gradients;
                                           the T-CAM is a stop_gradient target)

Elementwise work (ReLU, pooling sum_t lambda_t x_t, ||x||^2, Adam) is not
counted. For B=32, n=400, D=1024, C=20 (Ha=256, Hc=128, L=128) this is
47.6 GFLOP per step; the direct MSE (the reconstruction built, as the
authors' release does) costs 52.2 ("gflop_direct_mse").

The machine's float32 matmul peak is measured in the same run: the median
time of a 4096 x 4096 x 4096 `tf.linalg.matmul` in a tf.function, before and
after the step timing (other jobs on a shared machine move both numbers).

Usage, from the repository root:
  python benchmarks/train_step.py --batch_size=32 \\
      --num_segments=400 --feature_dim=1024 [--num_classes=20] [--jit_compile] \\
      [--mixed_precision=mixed_bfloat16] [--steps=20] [--profile_dir=DIR]

--mixed_precision sets the Keras dtype policy before the models are built.
--profile_dir writes a TF profiler trace of 3 more steps (TensorBoard's
profile plugin reads it; docs/performance.md). Wall-clock figures depend on
what else runs on the machine: the CPU-second figures (time.process_time of
this process) move much less when other jobs take cores away.

The last line printed is one JSON object with the figures.
"""
import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgam_tf.config import SECONDS_PER_SEGMENT, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from dgam_tf.data import records, writer  # noqa: E402
from dgam_tf.training import trainer as trainer_lib  # noqa: E402


def step_gflop(batch_size, num_segments, feature_dim, num_classes, attention_hidden=256,
               cvae_hidden=128, latent_dim=128):
    """Analytic matmul GFLOP of one step (both stages), by part; see the docstring.
    "direct_mse": the total if the reconstruction were built."""
    n_rows = batch_size * num_segments
    d, ha, hc, lat, k = feature_dim, attention_hidden, cvae_hidden, latent_dim, num_classes + 1
    f_att = 2 * n_rows * (d * ha + ha)
    f_enc = 2 * n_rows * ((d + 1) * hc + hc * hc + hc * 2 * lat)
    f_dh = 2 * n_rows * ((lat + 1) * hc + hc * hc)
    f_out, f_g = 2 * n_rows * hc * d, 2 * n_rows * hc * hc
    f_tcam = 2 * n_rows * d * k
    f_cls = 2 * 2 * batch_size * d * k
    stage1 = (f_att + f_enc + f_dh + f_out + f_g) + (
        f_enc + 2 * n_rows * (hc * hc + hc * 2 * lat) + 2 * f_dh + f_out + 2 * f_g)
    stage2 = (f_att + f_tcam + f_dh + f_out + f_g + f_cls) + (
        f_att + 2 * n_rows * ha + f_dh + f_g + 2 * f_cls)
    # Built in full: h W forward, its kernel and input gradients in stage 1,
    # forward and input gradient in stage 2; no F_g.
    direct = stage1 + stage2 + 2 * f_out - 5 * f_g
    return {"stage1": stage1 / 1e9, "stage2": stage2 / 1e9, "total": (stage1 + stage2) / 1e9,
            "direct_mse": direct / 1e9}


def matmul_peak_gflops(size=4096, repeats=5):
    """Float32 matmul peak: a size^3 tf.linalg.matmul in a tf.function.

    Returns:
      (GFLOP per wall-clock second, GFLOP per CPU-second of this process),
      medians over `repeats`. The second does not drop when other jobs take
      cores away; with an idle machine, wall = CPU-seconds / cores in use.
    """
    a = tf.random.normal([size, size])
    b = tf.random.normal([size, size])

    @tf.function
    def matmul():
        return tf.linalg.matmul(a, b)[0, 0]

    matmul().numpy()  # trace + warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        matmul().numpy()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    gflop = 2 * size ** 3 / 1e9
    return gflop / statistics.median(wall), gflop / statistics.median(cpu)


def peak_figures(achieved, peak_before, peak_after):
    """The JSON figures comparing a rate with the matmul peak.

    Args:
      achieved: (GFLOP per wall-clock second, GFLOP per CPU-second).
      peak_before, peak_after: `matmul_peak_gflops` before and after timing.
    """
    peak, peak_per_cpu = peak_medians(peak_before, peak_after)
    return {
        "achieved_gflops": round(achieved[0], 1),
        "matmul_peak_gflops": round(peak, 1),
        "matmul_peak_gflops_before_after": [round(peak_before[0], 1), round(peak_after[0], 1)],
        "fraction_of_peak": round(achieved[0] / peak, 3),
        # The same two rates per CPU-second of this process: robust to other
        # jobs taking cores away (but not to their effect on caches).
        "achieved_gflop_per_cpu_s": round(achieved[1], 1),
        "matmul_peak_gflop_per_cpu_s": round(peak_per_cpu, 1),
        "fraction_of_peak_cpu": round(achieved[1] / peak_per_cpu, 3),
    }


def peak_medians(peak_before, peak_after):
    """(GFLOP/s, GFLOP per CPU-second) of the peak: medians of before and after."""
    return (statistics.median([peak_before[0], peak_after[0]]),
            statistics.median([peak_before[1], peak_after[1]]))


def _tiny_dataset(path, stream, feature_dim, num_classes, num_videos):
    """The Trainer only needs a train split of the right D and C to exist."""
    info = records.DatasetInfo(class_names=[f"class{c}" for c in range(num_classes)],
                               streams=[stream], feature_dim=feature_dim)
    rng = np.random.default_rng(0)
    with writer.DatasetWriter(path, info) as out:
        for i in range(num_videos):
            out.add("train", records.Video(
                video_id=f"v{i}", features={stream: rng.uniform(size=(2, feature_dim))},
                labels=[i % num_classes], duration=2 * SECONDS_PER_SEGMENT))
    return records.load_info(path)


def random_batch(data, latent_dim, stream, feature_dim, num_classes, seed=0):
    """A batch of the training pipeline's structure, I3D-like features >= 0."""
    rng = np.random.default_rng(seed)
    b, n = data.batch_size, data.num_segments
    x = np.maximum(rng.normal(0.4, 0.5, (b, n, feature_dim)), 0).astype(np.float32)
    labels = np.zeros((b, num_classes), np.float32)
    labels[np.arange(b), np.arange(b) % num_classes] = 1
    labels[::4, (np.arange(b)[::4] + 1) % num_classes] = 1         # some two-class videos
    return {stream: tf.constant(x),
            stream + "_noise": tf.constant(rng.normal(size=(b, n, latent_dim))
                                           .astype(np.float32)),
            "labels": tf.constant(labels)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_segments", type=int, default=400)
    parser.add_argument("--feature_dim", type=int, default=1024)
    parser.add_argument("--num_classes", type=int, default=20)
    parser.add_argument("--jit_compile", action="store_true")
    parser.add_argument("--mixed_precision", choices=["mixed_float16", "mixed_bfloat16"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="0: TF's default")
    parser.add_argument("--inter_op_threads", type=int, default=0, help="0: TF's default")
    parser.add_argument("--peak_size", type=int, default=4096)
    parser.add_argument("--profile_dir", default=None,
                        help="also write a TF profiler trace of 3 steps here")
    args = parser.parse_args()

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    stream = "rgb"
    data = DataConfig(streams=(stream,), batch_size=args.batch_size,
                      num_segments=args.num_segments)
    model = ModelConfig(streams=(stream,))
    train = TrainConfig(jit_compile=args.jit_compile, mixed_precision=args.mixed_precision,
                        progress=False)

    peak_before = matmul_peak_gflops(args.peak_size)
    with tempfile.TemporaryDirectory(prefix="dgam_bench_") as tmp:
        data_dir = os.path.join(tmp, "data")
        info = _tiny_dataset(data_dir, stream, args.feature_dim, args.num_classes,
                             args.batch_size)
        trainer = trainer_lib.Trainer(data_dir, info, data, model, train)
        cvae_step = trainer.step_fns[trainer_lib.CVAE_STAGE]
        model_step = trainer.step_fns[trainer_lib.MODEL_STAGE]
        batch = random_batch(data, model.latent_dim, stream, args.feature_dim,
                             args.num_classes)
        ramp = tf.constant(0.5, tf.float32)

        def run_stage(step_fn):
            """(wall seconds, CPU seconds of this process) of one stage."""
            start, start_cpu = time.perf_counter(), time.process_time()
            out = step_fn(batch, ramp)
            float(out.finite[stream])   # waits for the step to finish
            return time.perf_counter() - start, time.process_time() - start_cpu

        for _ in range(args.warmup):
            run_stage(cvae_step)
            run_stage(model_step)
        stage1, stage2 = [], []
        for _ in range(args.steps):
            stage1.append(run_stage(cvae_step))
            stage2.append(run_stage(model_step))
        if args.profile_dir:
            tf.profiler.experimental.start(args.profile_dir)
            for i in range(3):
                with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
                    run_stage(cvae_step)
                    run_stage(model_step)
            tf.profiler.experimental.stop()
    peak_after = matmul_peak_gflops(args.peak_size)

    def median(values):
        return statistics.median(values)

    wall = [a[0] + b[0] for a, b in zip(stage1, stage2)]
    cpu = [a[1] + b[1] for a, b in zip(stage1, stage2)]
    seconds, cpu_seconds = median(wall), median(cpu)
    gflop = step_gflop(args.batch_size, args.num_segments, args.feature_dim, args.num_classes,
                       model.attention_hidden, model.cvae_hidden, model.latent_dim)
    peak, peak_per_cpu = peak_medians(peak_before, peak_after)
    achieved = gflop["total"] / seconds
    achieved_per_cpu = gflop["total"] / cpu_seconds
    result = {
        "ms_per_step": round(1000 * seconds, 1),
        "ms_stage1": round(1000 * median([w for w, _ in stage1]), 1),
        "ms_stage2": round(1000 * median([w for w, _ in stage2]), 1),
        "ms_per_step_min": round(1000 * min(wall), 1),
        "cpu_ms_per_step": round(1000 * cpu_seconds, 1),
        "videos_per_s": round(args.batch_size / seconds, 1),
        "gflop_per_step": round(gflop["total"], 2),
        "gflop_stage1": round(gflop["stage1"], 2),
        "gflop_stage2": round(gflop["stage2"], 2),
        **peak_figures((achieved, achieved_per_cpu), peak_before, peak_after),
        "gflop_direct_mse": round(gflop["direct_mse"], 2),
        "steps": args.steps,
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision,
        "batch_size": args.batch_size, "num_segments": args.num_segments,
        "feature_dim": args.feature_dim, "num_classes": args.num_classes,
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"step (stage 1 + stage 2): {result['ms_per_step']:.1f} ms median over "
          f"{args.steps} steps (stage 1 {result['ms_stage1']:.1f} ms, stage 2 "
          f"{result['ms_stage2']:.1f} ms; {result['cpu_ms_per_step']:.0f} CPU-ms), "
          f"{result['videos_per_s']:.1f} videos/s")
    print(f"analytic matmul work: {gflop['total']:.2f} GFLOP/step (stage 1 "
          f"{gflop['stage1']:.2f}, stage 2 {gflop['stage2']:.2f}) -> {achieved:.1f} GFLOP/s, "
          f"{achieved_per_cpu:.1f} GFLOP per CPU-second")
    print(f"float32 matmul peak ({args.peak_size}^3): {peak:.1f} GFLOP/s (before "
          f"{peak_before[0]:.1f}, after {peak_after[0]:.1f}), {peak_per_cpu:.1f} GFLOP per "
          f"CPU-second; the step reaches {100 * achieved / peak:.0f}% of it "
          f"({100 * achieved_per_cpu / peak_per_cpu:.0f}% per CPU-second)")
    print(f"load average {result['load_average_1min']} on {result['cpus']} CPUs (compare "
          "with another program only when run side by side)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
