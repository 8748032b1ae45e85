"""Training input pipeline throughput and memory on THUMOS14-scale records.

Writes THUMOS14-like training sets with dgam_tf.data.writer.DatasetWriter
into a temporary folder: random ReLU-like features (mean about 0.5), two
streams, D = 1024, float16 records, and segment counts T spread like
THUMOS14's 200 training videos (log-normal, mean about 350, longest 2,700;
the same distribution for the larger set). Then, for each set, a fresh child
process (so that peak RSS is its own) iterates
`dgam_tf.data.pipeline.train_dataset(...)` with a `dgam_tf.config.DataConfig`
(batch 32, n = 400, two streams, with the CVAE noise) over several epochs,
both stages per epoch, exactly as the trainer does (a new dataset per
stage), and reports:

* videos/s over all epochs (dataset start-up, i.e. filling the shuffle
  buffer, included), and in steady state (first batch of each stage excluded);
* the ratio to what training consumes: one step eats --batch_size videos
  per stage in --step_ms, the step time benchmarks/train_step.py measures on
  the same machine (run it just before); the goal is >= 10x that, so that
  the step never waits for its input and the pipeline takes little of the
  CPU it shares with the step;
* the time of the --skip_bad_records pre-scan of the set (every record
  read and validated once), against a training epoch's time;
* peak RSS of the child (resource.getrusage), minus the RSS after TF import
  and before reading. With a bounded local shuffle (--shuffle_buffer=N; the
  training default, 0, holds the whole split instead, see --data_residency
  in docs/performance.md) it must not grow with the number of videos: the
  buffer of serialized records bounds it, so 200 and 400 videos are
  compared at buffers of 256 and 128.

Usage, from the repository root:
  python benchmarks/input_pipeline.py --step_ms=MS [--epochs=4] \\
      [--num_videos=200,400] [--shuffle_buffers=256,128]

The headline figures (first lines of the JSON) are those of the first
--num_videos with the first --shuffle_buffer.

The last line printed is one JSON object with the figures.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

GOAL_RATIO = 10.0         # pipeline throughput / step consumption


def thumos_lengths(num_videos, mean=350, longest=2700, sigma=0.87):
    """Deterministic log-normal segment counts: mean ~`mean`, max `longest`.

    Quantiles (i + 0.5) / num_videos of a log-normal with shape `sigma`
    (fitted so that the longest of 200 is ~7.7 times the mean, as in
    THUMOS14's validation set), scaled to the mean, then the longest set to
    `longest`.
    """
    normal = statistics.NormalDist()
    q = np.exp(sigma * np.array([normal.inv_cdf((i + 0.5) / num_videos)
                                 for i in range(num_videos)]))
    t = np.maximum(np.round(q / q.mean() * mean), 8).astype(int)
    t[np.argmax(t)] = longest
    return np.random.default_rng(0).permutation(t)


def write_dataset(path, num_videos, feature_dim, num_classes=20, num_shards=4):
    from dgam_tf.config import SECONDS_PER_SEGMENT, STREAMS
    from dgam_tf.data import records, writer
    info = records.DatasetInfo(class_names=[f"class{c}" for c in range(num_classes)],
                               streams=list(STREAMS), feature_dim=feature_dim)
    rng = np.random.default_rng(num_videos)
    lengths = thumos_lengths(num_videos)
    with writer.DatasetWriter(path, info, num_shards={"train": num_shards}) as out:
        for i, t in enumerate(lengths):
            features = {s: np.maximum(rng.standard_normal((t, feature_dim), np.float32) * 0.5
                                      + 0.4, 0) for s in STREAMS}
            labels = sorted({i % num_classes, (i * 7) % num_classes} if i % 4 == 0
                            else {i % num_classes})
            out.add("train", records.Video(
                video_id=f"video_validation_{i:07d}", features=features, labels=labels,
                duration=t * SECONDS_PER_SEGMENT))
    return lengths


def scan_seconds(data_dir):
    """Time of the --skip_bad_records pre-scan (scan.skip_bad_records)."""
    from dgam_tf.data import records, scan
    info = records.load_info(data_dir)
    start = time.perf_counter()
    scan.skip_bad_records(data_dir, info)
    return time.perf_counter() - start


def rss_mb(peak):
    if peak:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(data_dir, epochs, shuffle_buffer, batch_size, num_segments):
    """Runs in a child process: iterates the training pipeline, returns figures."""
    import tensorflow as tf
    from dgam_tf.config import DataConfig, ModelConfig
    from dgam_tf.data import pipeline, records

    info = records.load_info(data_dir)
    latent_dim = ModelConfig().latent_dim       # with GAM: the CVAE's noise too
    config = DataConfig(batch_size=batch_size, num_segments=num_segments,
                        shuffle_buffer=shuffle_buffer)
    tf.constant(0.0) + 1  # start the runtime before the baseline RSS
    rss_start = rss_mb(peak=False)
    videos, first_batch, steady = 0, [], []
    start = time.perf_counter()
    cpu_start = time.process_time()
    for epoch in range(epochs):
        for stage in (1, 2):
            t0 = time.perf_counter()
            t_prev = None
            for i, batch in enumerate(pipeline.train_dataset(data_dir, info, config,
                                                             epoch, stage, latent_dim)):
                batch["rgb"].numpy()   # materialised (prefetch hands it over)
                now = time.perf_counter()
                if i == 0:
                    first_batch.append(now - t0)
                else:
                    steady.append(now - t_prev)
                t_prev = now
                videos += int(batch["labels"].shape[0])
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return {
        "videos": videos,
        "seconds": elapsed,
        "videos_per_s": videos / elapsed,
        "steady_videos_per_s": batch_size / statistics.median(steady),
        "first_batch_s": statistics.median(first_batch),
        "cpu_s_per_video": cpu / videos,
        "rss_start_mb": rss_start,
        "peak_rss_mb": rss_mb(peak=True),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_videos", default="200,400")
    parser.add_argument("--shuffle_buffers", default="256,128")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--num_segments", type=int, default=400)
    parser.add_argument("--feature_dim", type=int, default=1024)
    parser.add_argument("--step_ms", type=float, required=True,
                        help="ms of one training step, as benchmarks/train_step.py measures "
                             "it on this machine")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:  # data_dir,shuffle_buffer
        data_dir, buffer = args.child.split(",")
        print(json.dumps(measure(data_dir, args.epochs, int(buffer), args.batch_size,
                                 args.num_segments)))
        return

    step_s = args.step_ms / 1000
    results = []
    with tempfile.TemporaryDirectory(prefix="dgam_pipeline_bench_") as tmp:
        for n in (int(v) for v in args.num_videos.split(",")):
            data_dir = os.path.join(tmp, f"thumos_like_{n}")
            start = time.perf_counter()
            lengths = write_dataset(data_dir, n, args.feature_dim)
            size = sum(os.path.getsize(os.path.join(data_dir, f))
                       for f in os.listdir(data_dir)) / 2**20
            print(f"{n} videos: T mean {lengths.mean():.0f}, median {np.median(lengths):.0f}, "
                  f"max {lengths.max()}; {size:.0f} MiB of records "
                  f"(written in {time.perf_counter() - start:.0f} s)", flush=True)
            scan_s = scan_seconds(data_dir)
            epoch_s = 2 * (n // args.batch_size) * step_s
            print(f"  --skip_bad_records scan: {scan_s:.2f} s = {scan_s / epoch_s:.2f} of a "
                  f"training epoch ({epoch_s:.1f} s: two stages of {n // args.batch_size} "
                  f"steps of {step_s} s)", flush=True)
            for buffer in (int(v) for v in args.shuffle_buffers.split(",")):
                out = subprocess.run(
                    [sys.executable, os.path.abspath(__file__), f"--child={data_dir},{buffer}",
                     f"--epochs={args.epochs}", f"--batch_size={args.batch_size}",
                     f"--num_segments={args.num_segments}", f"--step_ms={args.step_ms}"],
                    check=True, capture_output=True, text=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r.update(num_videos=n, shuffle_buffer=buffer, records_mib=round(size, 1),
                         skip_bad_records_scan_s=scan_s,
                         mean_segments=float(lengths.mean()), max_segments=int(lengths.max()))
                results.append(r)
                print(f"  shuffle_buffer {buffer}: {r['videos_per_s']:.0f} videos/s overall, "
                      f"{r['steady_videos_per_s']:.0f} in steady state (first batch of a stage "
                      f"after {r['first_batch_s']:.2f} s), {1000 * r['cpu_s_per_video']:.1f} "
                      f"CPU-ms/video; peak RSS {r['peak_rss_mb']:.0f} MiB "
                      f"({r['peak_rss_mb'] - r['rss_start_mb']:.0f} above start-up)", flush=True)

    need = args.batch_size / step_s
    main_run = results[0]   # first --num_videos, first --shuffle_buffers
    summary = {
        "videos_per_s": round(main_run["videos_per_s"], 1),
        "steady_videos_per_s": round(main_run["steady_videos_per_s"], 1),
        "step_consumes_videos_per_s": need,
        "ratio_to_step": round(main_run["videos_per_s"] / need, 2),
        "steady_ratio_to_step": round(main_run["steady_videos_per_s"] / need, 2),
        "goal_ratio": GOAL_RATIO,
        "meets_goal": main_run["videos_per_s"] / need >= GOAL_RATIO,
        "epochs": args.epochs,
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "runs": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
                 for r in results],
    }
    print(f"throughput {summary['videos_per_s']} videos/s = {summary['ratio_to_step']}x what "
          f"training consumes ({need:.0f} videos/s; steady state "
          f"{summary['steady_ratio_to_step']}x); goal >= {GOAL_RATIO:.0f}x: "
          f"{'met' if summary['meets_goal'] else 'not met'}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
