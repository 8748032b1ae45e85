"""--mode=detect: video files -> detections with a trained model.

Steps:
  1. check, before any work: the model (model.json: I3D-sized features, the
     streams it has and --streams keeps), the --i3d_* weights of those
     streams, the video files, and what features the model was trained on
     (its features.json) against the recipe and weights in use: one warning
     line when they differ or are unknown;
  2. features: features.pipeline.extract, as --mode=extract computes them;
  3. localization: the test-time sampling of --mode=eval (n = clip(T,
     --test_min_segments, --test_max_segments) uniform segments), the
     model's outputs (inference.output_fn) and localize.localize_video with
     the localization flags, so detections equal --mode=eval's on the same
     features;
  4. report (report.py): a table per video as it finishes, with --plot its
     timeline PNG, then the ActivityNet result JSON of all the videos.
"""
import collections
import contextlib
import os
import sys

import numpy as np

from dgam_tf import files
from dgam_tf.data import sampling
from dgam_tf.detect import report
from dgam_tf.errors import UserError
from dgam_tf.features import extract, pipeline, recipe, video as video_lib
from dgam_tf.localization import inference, localize
from dgam_tf.models import model_dir as model_dir_lib

DETECTIONS_FILE = "detections_video.json"
# Thumbnails offered to the timeline's strip (it shows as many as fit), and
# their short side in pixels.
THUMBNAILS = 24
THUMBNAIL_PIXELS = 96

# One video's result: its id and file, seconds of video, T segments of
# seconds_per_segment, {stream: localize.StreamOutput} at the sampled
# positions and [localize.Detection].
Detected = collections.namedtuple(
    "Detected", "video_id path duration num_segments seconds_per_segment outputs detections")


def video_ids(paths, fps):
    """[(video id, path)] of --video files; the id is the file name without
    its extension. UserError for none, a missing file, a file whose first
    frame does not decode (checked here, before any work) or two videos with
    one id."""
    if not paths:
        raise UserError("--mode=detect needs --video=PATH (repeat it for more videos)")
    for path in paths:
        if not os.path.isfile(path):
            raise UserError(f"--video {path}: no such file")
        with contextlib.closing(iter(video_lib.Decoded(path, fps))) as frames:
            next(frames)
    return extract.named_videos(paths, "--video")


def model_streams(model_dir, model_cfg, streams):
    """The streams of the model that `streams` (--streams) keeps; UserError
    for a model that does not take I3D features, or no stream left."""
    if model_cfg.feature_dim != recipe.FEATURE_DIM:
        raise UserError(f"the model in {model_dir} takes {model_cfg.feature_dim}-d features, "
                        f"not I3D's {recipe.FEATURE_DIM}: --mode=detect needs a model trained "
                        "on I3D features (--mode=extract your videos, then --mode=train on "
                        "them, or train on a converted THUMOS14 / ActivityNet release)")
    kept = tuple(s for s in model_cfg.streams if s in streams)
    if not kept:
        raise UserError(f"the model in {model_dir} has the {','.join(model_cfg.streams)} "
                        f"stream(s); --streams={','.join(streams)} leaves none")
    return kept


def provenance_warning(model_dir, trained, used):
    """One warning line when the model's training features (features.json's
    provenance, None when unknown) differ from those detect computes
    (`used`), or are unknown; None when they agree."""
    if trained is None:
        weights = ", ".join(f"{s} {w['name']} {w['crc32']}" for s, w in used["weights"].items())
        return (f"warning: {model_dir} does not record which features it was trained on "
                "(converted, public or synthetic ones); detect computes dgam-tf's I3D "
                f"features with {report.recipe_text(used['recipe'])} and weights {weights}, "
                "right only if the model's features were made so")
    differences = extract.provenance_differences(trained, used)
    if not differences:
        return None
    return (f"warning: the model in {model_dir} was trained on other features than detect "
            f"computes: {'; '.join(differences)}; its detections may be meaningless "
            "(use the recipe and weights of its features.json)")


def sampled_outputs(modules, features, num_classes, data_cfg):
    """{stream: localize.StreamOutput} of one video's features {stream: [T, D]}
    at the test-time sampling of --mode=eval (pipeline.eval_dataset)."""
    t = len(next(iter(features.values())))
    idx = sampling.test_indices(t, data_cfg.test_min_segments,
                                data_cfg.test_max_segments).numpy()          # [n]
    return {s: localize.StreamOutput(*(o.numpy() for o in inference.output_fn(
        attention, classifier, num_classes)(features[s][idx])))
        for s, (attention, classifier) in modules.items()}


def detect_videos(videos, modules, model_cfg, networks, cfg):
    """Yields a Detected per (video id, path) of `videos`, in order.

    Args:
      modules: {stream: (attention, classifier)} of the trained model.
      model_cfg: its ModelConfig (the classes).
      networks: pipeline.FeatureNetworks of the same streams.
      cfg: Config (extract: the recipe; data: the test sampling;
        localization).

    Raises:
      UserError: a video that cannot be decoded or is shorter than one segment.
    """
    seconds_per_segment = cfg.extract.segment_frames / cfg.extract.fps
    paths = dict(videos)
    # Closed on the way out, so that no decoding or flow thread outlives an error.
    with contextlib.closing(pipeline.extract(videos, cfg.extract, networks)) as results:
        for result in results:
            if result.error:
                raise UserError(result.error)
            outputs = sampled_outputs(modules, result.features, model_cfg.num_classes, cfg.data)
            t = len(next(iter(result.features.values())))
            detections = localize.localize_video(outputs, t, cfg.localization,
                                                 seconds_per_segment=seconds_per_segment)
            yield Detected(result.key, paths[result.key], result.duration, t,
                           seconds_per_segment, outputs, detections)


def thumbnails(path, fps, duration, count=THUMBNAILS, short_side=THUMBNAIL_PIXELS):
    """[(time s, [h, w, 3] uint8)] of `count` frames evenly spread over the
    video, decoded again at `fps` (decoding costs little beside the flow)."""
    wanted = set(np.round((np.arange(count) + 0.5) * duration * fps / count).astype(int))
    last, frames = max(wanted), []
    for k, frame in enumerate(video_lib.Decoded(path, fps)):
        if k in wanted:
            frames.append((k / fps, recipe.resize_short_side(frame, short_side)))
        if k >= last:
            break
    return frames


def start(cfg):
    """The checks of step 1, then the work's parts: ([(video id, path)],
    the model's streams, {stream: weights path}), with the provenance
    warning printed."""
    videos = video_ids(cfg.detect.videos, cfg.extract.fps)
    model_cfg = model_dir_lib.read_settings(cfg.model_dir)
    streams = model_streams(cfg.model_dir, model_cfg, cfg.data.streams)
    weights = extract.checkpoints(cfg.extract, streams, mode="detect")
    used = extract.provenance(cfg.extract, weights, cfg.train.mixed_precision)
    warning = provenance_warning(cfg.model_dir, model_dir_lib.read_features(cfg.model_dir),
                                 used)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if cfg.plot.frames and not cfg.detect.plot:
        print("note: --plot_frames draws thumbnails in --plot's timelines; without --plot "
              "nothing is drawn", file=sys.stderr)
    return videos, streams, weights


def write_json(cfg, found, class_names):
    """Writes {video id: [Detection]} as ActivityNet result JSON to
    --output_detections_json (default <model_dir>/detections_video.json),
    atomically; returns the path."""
    path = cfg.detect.output_detections_json or os.path.join(cfg.model_dir, DETECTIONS_FILE)
    files.atomic_write_json(path, localize.results_json(found, class_names))
    return path


def run(cfg):
    """--mode=detect: the detections of each --video, printed, drawn with
    --plot and written as JSON (those of the videos before a bad one too)."""
    videos, streams, weights = start(cfg)
    modules, model_cfg, _ = model_dir_lib.load_modules(cfg.model_dir, cfg.evaluation.checkpoint,
                                                       streams)
    networks = pipeline.FeatureNetworks(weights, cfg.extract, cfg.train.mixed_precision)
    print(f"Detecting actions in {len(videos)} video{'s' * (len(videos) != 1)} with the "
          f"{'+'.join(streams)} model in {cfg.model_dir}", flush=True)
    found, names = {}, model_cfg.class_names
    try:
        with contextlib.closing(detect_videos(videos, modules, model_cfg, networks, cfg)) as done:
            for detected in done:
                found[detected.video_id] = detected.detections
                print(report.table(detected, names, cfg.detect.table_rows), flush=True)
                if cfg.detect.plot:
                    frames = (thumbnails(detected.path, cfg.extract.fps, detected.duration)
                              if cfg.plot.frames else None)
                    print("Wrote " + report.plot(detected, names,
                                                 os.path.join(cfg.model_dir, "plots"),
                                                 cfg.plot.min_score, frames), flush=True)
    except (UserError, KeyboardInterrupt) as e:
        if not found:
            raise
        path = write_json(cfg, found, names)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise UserError(f"{e} (the detections of the {len(found)} video(s) before it are in "
                        f"{path})") from None
    print(f"Wrote {write_json(cfg, found, names)}")
