"""Latency of the exported SavedModel's two signatures, in-process.

Builds a randomly initialised two-stream DGAM of I3D size (D = 1024, C = 20,
attention hidden 256; no CVAE, which serving does not use), exports it with
`export_models` (THUMOS14 localization settings, n = clip(T, 50, 400)) into
a temporary folder, loads it back with `tf.saved_model.load` and times, on
random 400- and 2,000-segment videos:

* `localize`: one video [T, D] per stream -> detections (samples n <= 400
  segments inside the graph);
* `serving_default`: one video as a batch of one [1, T, D] -> attention,
  class probabilities and T-CAM of all T segments.

Usage, from the repository root:
  python benchmarks/serving.py [--iterations=200]

Prints a table; the last line is one JSON object with the figures.
"""
import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from dgam_tf.export import saved_model  # noqa: E402
from dgam_tf.models.dgam import StreamModel  # noqa: E402
from dgam_tf.serving import client  # noqa: E402

FEATURE_DIM = 1024
NUM_CLASSES = 20
SEGMENTS = (400, 2000)
WARMUP_CALLS = 10


def export_random_model(export_dir, seed):
    """Exports a random two-stream model of I3D size; returns its folder."""
    keras.utils.set_random_seed(seed)
    models = {}
    for stream in ("rgb", "flow"):
        models[stream] = StreamModel(FEATURE_DIM, NUM_CLASSES, gam=False, name=stream)
        models[stream].build_all()
    return saved_model.export_models(models, [f"class_{c:02d}" for c in range(NUM_CLASSES)],
                                     export_dir)


def latencies_ms(function, inputs, iterations):
    """Wall-clock milliseconds of `iterations` calls, after warm-up calls."""
    for _ in range(WARMUP_CALLS):
        outputs = function(**inputs)
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        outputs = function(**inputs)
        times.append(1000 * (time.perf_counter() - start))
    return np.array(times), outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as export_dir:
        model = tf.saved_model.load(export_random_model(export_dir, args.seed))
    figures = {}
    print(f"{'signature':<16}{'T':>6}{'p50 ms':>10}{'p99 ms':>10}  outputs")
    for num_segments in SEGMENTS:
        video = {s: rng.normal(size=(num_segments, FEATURE_DIM)).astype(np.float32)
                 for s in ("rgb", "flow")}
        requests = {
            "localize": client.localize_inputs(video, duration=0.64 * num_segments),
            "serving_default": client.serving_default_inputs([video])}
        for name, inputs in requests.items():
            times, outputs = latencies_ms(
                model.signatures[name], {k: tf.constant(v) for k, v in inputs.items()},
                args.iterations)
            p50, p99 = np.percentile(times, [50, 99])
            shown = (f"{len(outputs['start'])} detections" if name == "localize"
                     else f"rgb_tcam {outputs['rgb_tcam'].shape.as_list()}")
            print(f"{name:<16}{num_segments:>6}{p50:>10.2f}{p99:>10.2f}  {shown}")
            figures[f"{name}_{num_segments}"] = {"p50_ms": round(float(p50), 3),
                                                 "p99_ms": round(float(p99), 3)}
    figures.update(iterations=args.iterations, feature_dim=FEATURE_DIM,
                   num_classes=NUM_CLASSES, threads=os.cpu_count())
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
