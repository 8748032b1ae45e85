"""--mode=extract: a folder of video files -> an I3D feature dataset in --data_dir.

Steps (docs/features.md):
  1. plan: the videos of --video_dir (a folder, or a text file of paths),
     with their split, labels and ground truth from --annotations
     (ActivityNet JSON), or all in one unlabelled split "test";
  2. features: pipeline.extract per video, each finished video written at
     once, atomically, to `<data_dir>.work/<video>.npz`; a rerun of the same
     command skips the videos found there (the work folder's settings.json
     must match: other weights or another recipe are refused);
  3. records: the work folder's features through writer.DatasetWriter into
     --data_dir (published whole), then the work folder is removed.
"""
import collections
import io
import os
import sys
import time

import numpy as np

from dgam_tf import files
from dgam_tf.data import records, writer
from dgam_tf.data.converters import common
from dgam_tf.errors import UserError
from dgam_tf.features import video

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v",
                    ".flv", ".wmv", ".3gp", ".ogv", ".ts")
UNLABELLED_SPLIT = "test"
# The recipe fields the features' values depend on (recipe.py, docs/features.md).
RECIPE = ("fps", "segment_frames", "resize_short_side", "crop_size", "flow_bound")
EXTRACTOR = "dgam-tf I3D Mixed_5c"
NUM_SHARDS = 4
SETTINGS_FILE = "settings.json"

# One video to extract: its id, file, split and annotation entry
# ({"duration"?, "annotations": [...]}, empty without --annotations).
PlannedVideo = collections.namedtuple("PlannedVideo", "video_id path split entry")
Plan = collections.namedtuple("Plan", "videos class_names source")


def list_videos(video_dir):
    """[(video id, path)] of a folder's video files (by extension, sorted) or
    of a list file's lines (relative paths from the list's folder)."""
    if os.path.isdir(video_dir):
        paths = sorted(os.path.join(video_dir, f) for f in os.listdir(video_dir)
                       if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith("."))
    elif os.path.isfile(video_dir):
        base = os.path.dirname(os.path.abspath(video_dir))
        paths = [os.path.join(base, line) for line in common.read_lines(video_dir)]
    else:
        raise UserError(f"--video_dir {video_dir}: no such folder or list file")
    if not paths:
        raise UserError(f"--video_dir {video_dir}: no video files (extensions "
                        f"{' '.join(VIDEO_EXTENSIONS)})")
    return named_videos(paths, f"--video_dir {video_dir}")


def named_videos(paths, where):
    """[(video id, path)] of video files: the id is the file name without its
    extension. UserError naming `where` for two videos with one id."""
    found = {}
    for path in paths:
        video_id = os.path.splitext(os.path.basename(path))[0]
        if video_id in found:
            raise UserError(f"{where}: two videos named '{video_id}': {found[video_id]} and "
                            f"{path}")
        found[video_id] = path
    return list(found.items())


def make_plan(cfg, class_names_file=None):
    """The Plan of an ExtractConfig: which videos, in which split, with which
    classes (a --class_names file, else the annotations' labels sorted)."""
    found = list_videos(cfg.video_dir)
    names = common.read_class_names(class_names_file) if class_names_file else None
    if not cfg.annotations:
        videos = [PlannedVideo(v, p, UNLABELLED_SPLIT, {}) for v, p in found]
        return Plan(videos, names or [], cfg.video_dir)
    database = common.read_database(cfg.annotations)
    subsets = {v: str(entry.get("subset", "")) for v, entry in database.items()}
    split_of = common.split_rule(list(subsets.values()), cfg.annotations)
    # ActivityNet's ids drop the "v_" of its YouTube file names.
    paths = dict(found)
    paths.update({v[2:]: p for v, p in found if v.startswith("v_") and v[2:] not in paths})
    videos = []
    for video_id, entry in database.items():
        split = split_of[subsets[video_id].lower()]
        if split is None:
            continue
        if video_id not in paths:
            raise UserError(f"video '{video_id}' of {cfg.annotations} has no file in "
                            f"{cfg.video_dir}")
        videos.append(PlannedVideo(video_id, paths[video_id], split, entry))
    if not videos:
        raise UserError(f"{cfg.annotations} lists no videos to extract")
    if names is None:
        names = sorted({a["label"] for v in videos for a in v.entry.get("annotations", [])})
    return Plan(videos, names, cfg.annotations)


def checkpoints(cfg, streams, mode="extract"):
    """{stream: weights path} for `streams`; UserError when one is not given."""
    given = {"rgb": cfg.i3d_rgb_checkpoint, "flow": cfg.i3d_flow_checkpoint}
    for stream in streams:
        if not given[stream]:
            hint = " (or --streams=rgb for RGB features alone)" if stream == "flow" else ""
            raise UserError(f"--mode={mode} needs --i3d_{stream}_checkpoint: DeepMind's "
                            f"kinetics-i3d data/checkpoints/{stream}_imagenet{hint}; "
                            "docs/features.md says where to get it")
    return {s: given[s] for s in streams}


def work_folder(data_dir, settings):
    """`<data_dir>.work`, created with `settings` (a JSON object) or checked
    against the settings it was created with."""
    work = data_dir.rstrip("/") + ".work"
    path = os.path.join(work, SETTINGS_FILE)
    if files.exists(path):
        before = files.read_json(path, "extraction settings")
        changed = sorted(k for k in set(before) | set(settings)
                         if before.get(k) != settings.get(k))
        if changed:
            raise UserError(f"{work} holds features extracted with other settings "
                            f"({', '.join(changed)}); rerun with those or delete it")
    else:
        files.atomic_write_json(path, settings)
    return work


def settings_of(cfg, weights, mixed_precision):
    """What the features in a work folder depend on."""
    return {**{k: getattr(cfg, k) for k in RECIPE + ("clips_per_batch",)},
            "weights": {s: files.abspath(p) for s, p in weights.items()},
            "mixed_precision": mixed_precision}


def provenance(cfg, weights, mixed_precision):
    """What features extracted with these settings are, as dataset.json's
    "features" and a model's features.json record it: {"extractor", "recipe"
    {RECIPE field: value}, "weights" {stream: {"path", "name", "crc32"}},
    "mixed_precision"} (weights.fingerprint names the weights)."""
    from dgam_tf.features.weights import fingerprint
    settings = settings_of(cfg, weights, mixed_precision)
    return {"extractor": EXTRACTOR, "recipe": {k: settings[k] for k in RECIPE},
            "weights": {s: {"path": p, **fingerprint(p)} for s, p in settings["weights"].items()},
            "mixed_precision": mixed_precision}


def provenance_differences(trained, used):
    """What differs between the provenance a model was trained on and the
    one in use: ["crop_size 224 (trained) / 16 (here)", "rgb weights
    rgb_imagenet 1a2b3c4d (trained) / rgb_scratch 5e6f7a8b (here)", ...];
    streams and fields the training record lacks count as differing."""
    recipe, weights = trained.get("recipe", {}), trained.get("weights", {})
    out = [f"{k} {recipe.get(k)} (trained) / {v} (here)"
           for k, v in used["recipe"].items() if recipe.get(k) != v]
    for stream, here in used["weights"].items():
        then = weights.get(stream)
        if then is None or then.get("crc32") != here["crc32"]:
            before = f"{then.get('name')} {then.get('crc32')}" if then else "none"
            out.append(f"{stream} weights {before} (trained) / {here['name']} "
                       f"{here['crc32']} (here)")
    return out


def feature_file(work, video_id):
    return os.path.join(work, f"{video_id}.npz")


def save_features(work, result):
    """Writes one video's pipeline.Result to the work folder, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, num_frames=result.num_frames, duration=result.duration,
             **{f"features_{s}": x for s, x in result.features.items()})
    files.atomic_write_bytes(feature_file(work, result.key), buffer.getvalue())


def assemble(plan, work, data_dir, streams, seconds_per_segment, *, feature_dtype="float16",
             overwrite=False, left_out=(), features=None):
    """Writes the records of every planned video but `left_out` (video ids)
    from the work folder's features into `data_dir`; returns the DatasetInfo.
    A segment covers `seconds_per_segment` (segment_frames / fps);
    `features` is their `provenance`."""
    import tensorflow as tf
    from dgam_tf.features.recipe import FEATURE_DIM
    info = records.DatasetInfo(class_names=list(plan.class_names), streams=list(streams),
                               feature_dim=FEATURE_DIM, feature_dtype=feature_dtype,
                               name=f"extract: {os.path.basename(plan.source.rstrip('/'))}",
                               features=features)
    class_ids = {name: c for c, name in enumerate(plan.class_names)}
    splits = {v.split for v in plan.videos}
    with writer.DatasetWriter(data_dir, info, overwrite=overwrite,
                              num_shards=dict.fromkeys(splits, NUM_SHARDS)) as out:
        for v in plan.videos:
            if v.video_id in left_out:
                continue
            with tf.io.gfile.GFile(feature_file(work, v.video_id), "rb") as f:
                saved = np.load(io.BytesIO(f.read()))
            features = {s: saved[f"features_{s}"] for s in streams}
            entry = {"duration": float(saved["duration"]), **v.entry}
            labels = sorted({common.class_id(a["label"], class_ids, v.video_id, plan.source)
                             for a in v.entry.get("annotations", [])})
            out.add(v.split, common.video(v.video_id, features, labels, entry, class_ids,
                                          seconds_per_segment, plan.source))
    return info


class Progress:
    """A one-line progress bar on a terminal (a line every 10 s otherwise):
    videos done, videos/s over this run, ETA."""

    def __init__(self, total, stream=sys.stderr):
        self.total, self.done, self.left_out = total, 0, 0
        self._stream, self._start = stream, time.monotonic()
        self._printed = self._start
        self._tty = stream.isatty()

    def update(self, ok):
        self.done += 1
        self.left_out += not ok
        now = time.monotonic()
        if self._tty or now - self._printed >= 10 or self.done == self.total:
            self._printed = now
            rate = self.done / max(now - self._start, 1e-9)
            eta = (self.total - self.done) / rate
            bad = f", {self.left_out} left out" if self.left_out else ""
            line = (f"{self.done}/{self.total} videos{bad}, {rate:.2f} videos/s, "
                    f"ETA {int(eta) // 60}:{int(eta) % 60:02d}")
            end = "\n" if not self._tty or self.done == self.total else ""
            print(("\r" if self._tty else "") + line, end=end, file=self._stream, flush=True)


# An extraction under way: what to extract, with which weights, where.
Job = collections.namedtuple("Job", "plan weights work todo")


def start(cfg):
    """Checks a Config's extraction settings and makes its Job: the plan, the
    weights, the work folder and the planned videos not yet in it."""
    ext, data_dir = cfg.extract, cfg.data.data_dir
    if not (ext.video_dir and data_dir):
        raise UserError("--mode=extract needs --video_dir and --data_dir")
    video.cv2()     # the `video` extra, before any work
    weights = checkpoints(ext, cfg.data.streams)
    files.refuse_existing(data_dir, cfg.convert.overwrite)
    plan = make_plan(ext, cfg.convert.class_names)
    work = work_folder(data_dir, settings_of(ext, weights, cfg.train.mixed_precision))
    todo = [v for v in plan.videos if not files.exists(feature_file(work, v.video_id))]
    print(f"Extracting {', '.join(cfg.data.streams)} features of {len(todo)} videos"
          + (f" ({len(plan.videos) - len(todo)} already done in {work})"
             if len(todo) < len(plan.videos) else ""), flush=True)
    return Job(plan, weights, work, todo)


def finish(cfg, job, left_out):
    """Writes the records of a Job whose videos but `left_out` (ids) are all
    in its work folder, then removes the work folder."""
    import tensorflow as tf
    ext = cfg.extract
    if len(left_out) == len(job.plan.videos):
        raise UserError("every video was left out; nothing to write")
    info = assemble(job.plan, job.work, cfg.data.data_dir, cfg.data.streams,
                    ext.segment_frames / ext.fps, feature_dtype=cfg.convert.feature_dtype,
                    overwrite=cfg.convert.overwrite, left_out=left_out,
                    features=provenance(ext, job.weights, cfg.train.mixed_precision))
    tf.io.gfile.rmtree(job.work)
    print(f"Wrote {cfg.data.data_dir}: {records.split_summary(info)}"
          + (f" ({len(left_out)} bad video{'s' * (len(left_out) != 1)} left out)"
             if left_out else ""))
    return info


def bad_video(cfg, message):
    """A bad video's UserError, or with --skip_bad_videos its line on stderr."""
    if not cfg.extract.skip_bad_videos:
        raise UserError(message + " (--skip_bad_videos leaves such videos out)")
    print(f"left out: {message}", file=sys.stderr)


def run(cfg):
    """--mode=extract: features of --video_dir's videos into --data_dir."""
    from dgam_tf.features import pipeline
    job = start(cfg)
    networks = pipeline.FeatureNetworks(job.weights, cfg.extract, cfg.train.mixed_precision)
    progress, left_out = Progress(len(job.todo)), set()
    for result in pipeline.extract([(v.video_id, v.path) for v in job.todo], cfg.extract,
                                   networks):
        if result.error:
            bad_video(cfg, result.error)
            left_out.add(result.key)
        else:
            save_features(job.work, result)
        progress.update(result.error is None)
    return finish(cfg, job, left_out)
