"""Client helpers for the exported DGAM model served by TF Serving.

Two signatures (see savedmodel/README.md):

* `serving_default`: a padded batch `<stream>_features` [B, T, D] plus
  `num_segments` [B] -> per stream `<stream>_attention` [B, T],
  `<stream>_class_probs` [B, C], `<stream>_tcam` [B, T, C].
* `localize`: one whole video `<stream>_features` [T, D] plus `duration` []
  seconds -> detections `start`, `end`, `score`, `class_id`, `label` [K].

gRPC: build a `PredictRequest` with `serving_default_request` or
`localize_request` and send it with `predict(stub, request)`. REST: build a
JSON body with `rest_body` (or `rest_instances` for the row format of
`serving_default`), post it to `rest_url(...)` with `rest_predict`, or any
HTTP client, and read the reply with `parse_rest_response` (the sending and
parsing functions live in serving/transport.py and are re-exported here).

From the shell, `python -m dgam_tf.serving.client` sends videos (.npy
features, a record file, or video files through the served I3D first:
serving/from_video.py) to `localize` and prints or writes ActivityNet result
JSON (`--help`). TensorFlow and gRPC are imported only where they are needed, so
the REST path and `--help` start quickly.
"""
import argparse
import json
import os
import sys

import numpy as np

from dgam_tf import files
from dgam_tf.errors import UserError
# The request builders and the sending and parsing functions are the
# client's API (the docstring above, savedmodel/README.md) beside its own.
from dgam_tf.export.signatures import (  # noqa: F401
    LOCALIZE, MODEL_NAME, SERVING_DEFAULT, localize_inputs, localize_request, predict_request,
    serving_default_inputs, serving_default_request)
from dgam_tf.serving.transport import (  # noqa: F401
    decode_strings, grpc_predict, make_stub, parse_predict_response, parse_rest_response,
    predict, rest_predict, rest_url)
from dgam_tf.tf_setup import import_tensorflow


# ---- REST bodies ------------------------------------------------------------




def rest_body(signature_name, inputs):
    """A columnar ("inputs") REST request body, ready for `json.dumps`.

    Works for both signatures (`localize` has a scalar input, so it cannot
    use the row format).
    """
    return {"signature_name": signature_name,
            "inputs": {name: np.asarray(value).tolist()
                       for name, value in inputs.items()}}


def rest_instances(videos):
    """A row-format ("instances") REST body for `serving_default`.

    Args:
      videos: as in `serving_default_inputs` (padded to a common length).

    Returns:
      {"signature_name", "instances": [one dict of inputs per video]}.
    """
    inputs = serving_default_inputs(videos)
    return {"signature_name": SERVING_DEFAULT,
            "instances": [{name: value[row].tolist() for name, value in inputs.items()}
                          for row in range(len(videos))]}






# ---- outputs ----------------------------------------------------------------


def detections(outputs):
    """`localize` outputs as ActivityNet-style detections.

    Args:
      outputs: dict from `parse_predict_response` or `parse_rest_response`.

    Returns:
      list of {"label", "score", "segment": [start, end], "class_id"}, in the
      model's order (by class id, then descending score).
    """
    labels = decode_strings(np.asarray(outputs["label"]))
    return [{"label": str(label), "score": float(score),
             "segment": [float(start), float(end)], "class_id": int(class_id)}
            for label, score, start, end, class_id in zip(
                labels, outputs["score"], outputs["start"], outputs["end"],
                outputs["class_id"])]




# ---- command line -----------------------------------------------------------


def results_json(outputs_by_video):
    """`localize` outputs of several videos as an ActivityNet result JSON
    object (see localize.results_json).

    Args:
      outputs_by_video: mapping video id -> parsed `localize` outputs.
    """
    from dgam_tf.localization import localize

    names, by_video = {}, {}
    for video_id, outputs in outputs_by_video.items():
        found = detections(outputs)
        names.update((d["class_id"], d["label"]) for d in found)
        by_video[video_id] = [localize.Detection(d["class_id"], d["score"], *d["segment"])
                              for d in found]
    return localize.results_json(by_video, names)


def _load_features(path):
    """A [T, D] feature matrix from a .npy file; UserError names the file."""
    try:
        x = np.load(path)
    except FileNotFoundError:
        raise UserError(f"feature file not found: {path}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    if x.ndim != 2:
        raise UserError(f"{path}: expected features [T, D], got shape {x.shape}")
    return x


def read_videos(args):
    """[(video_id, {stream: [T, D]}, duration)] that the command line names."""
    if args.record:
        from dgam_tf.data import records

        if not os.path.isfile(args.record):
            raise UserError(f"record file not found: {args.record}")
        info = records.load_info(os.path.dirname(os.path.abspath(args.record)))
        return [(v.video_id, v.features, v.duration)
                for v in records.read_videos_from_file(args.record, info)]
    paths = {s: p for s, p in (("rgb", args.rgb), ("flow", args.flow)) if p}
    if args.joint:
        x = _load_features(args.joint)
        if x.shape[1] % 2:
            raise UserError(f"{args.joint}: rgb and flow side by side need an even "
                            f"width, got {x.shape[1]}")
        features = dict(zip(("rgb", "flow"), np.split(x, 2, axis=1)))
    else:
        features = {s: _load_features(p) for s, p in paths.items()}
    first = args.joint or next(iter(paths.values()))
    video_id = args.video_id or os.path.splitext(os.path.basename(first))[0]
    return [(video_id, features, args.duration)]




def localize_remote(features, duration, args):
    """Sends one video to `localize` over args.protocol; returns the outputs."""
    if args.protocol == "grpc":
        return grpc_predict(localize_request(features, duration, args.model, args.version),
                            args)
    return rest_predict(rest_url(args.server, args.model, args.version),
                        rest_body(LOCALIZE, localize_inputs(features, duration)),
                        args.timeout)


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m dgam_tf.serving.client",
        description="Send videos to a served DGAM model's `localize` signature and print "
                    "the detections as ActivityNet result JSON.")
    video = parser.add_argument_group("the video (one of)")
    video.add_argument("--rgb", metavar="NPY", help="rgb features [T, D] (.npy)")
    video.add_argument("--flow", metavar="NPY", help="flow features [T, D] (.npy); "
                       "with --rgb for a two-stream model")
    video.add_argument("--joint", metavar="NPY", help="rgb and flow side by side "
                       "[T, 2 D] in one .npy")
    video.add_argument("--record", metavar="TFRECORD", help="every video of a record "
                       "file of a dgam-tf dataset (dataset.json beside it)")
    video.add_argument("--video", metavar="PATH", action="append", help="a video file "
                       "(repeatable): decoded and its TV-L1 flow computed here, features "
                       "from the served I3D (model i3d), then `localize`")
    _video_arguments(parser)
    parser.add_argument("--video_id", help="name of the .npy video in the output "
                        "(default: the file name)")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="the .npy video's length in seconds (default 0: "
                             "unknown, 0.64 s per segment)")
    parser.add_argument("--server", default="localhost:8501",
                        help="TF Serving host:port (default localhost:8501, the REST "
                             "port; gRPC is usually 8500)")
    parser.add_argument("--protocol", choices=("rest", "grpc"), default="rest")
    parser.add_argument("--model", default=MODEL_NAME, help="model name (default dgam)")
    parser.add_argument("--version", type=int, help="model version (default: latest)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    parser.add_argument("--output", metavar="JSON", help="write the detections there "
                        "(atomically) instead of printing them")
    return parser


def _video_arguments(parser):
    """The options of --video: streams, request size, the recipe's clip shape."""
    from dgam_tf.mode_config import ExtractConfig

    default = ExtractConfig()
    group = parser.add_argument_group("with --video")
    group.add_argument("--streams", default="rgb,flow", help="the streams the served dgam "
                       "model takes: rgb,flow (default), rgb or flow")
    group.add_argument("--max_request_mb", type=float, default=32.0,
                       help="the largest request to i3d, in MB (default 32); its clips "
                            "per request follow from a clip's encoded size")
    for name, help_text in (("segment_frames", "frames per clip"),
                            ("crop_size", "centre crop, pixels"),
                            ("resize_short_side", "frames resized to this short side first")):
        group.add_argument(f"--{name}", type=int, default=getattr(default, name),
                           help=f"{help_text} (default {getattr(default, name)}; as the "
                                "i3d export and the dgam model's features)")


def main(argv=None):
    """The command line; returns the exit status (errors: one line, 1)."""
    parser = _parser()
    args = parser.parse_args(argv)
    given = [a for a in ("rgb", "joint", "record", "video") if getattr(args, a)]
    if args.flow and not args.rgb:
        given.append("flow")
    if len(given) != 1:
        parser.error("give the video as --rgb and/or --flow, --joint, --record or --video")
    if args.record or args.protocol == "grpc":   # they import TensorFlow: quietly
        import_tensorflow()
    try:
        if args.output:
            files.check_output_file(args.output)
        if args.video:
            from dgam_tf.serving import from_video
            videos = from_video.read_videos(args)
        else:
            videos = read_videos(args)
        outputs = {video_id: localize_remote(features, duration, args)
                   for video_id, features, duration in videos}
        if args.output:
            files.atomic_write_json(args.output, results_json(outputs))
    except (UserError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.output:
        json.dump(results_json(outputs), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
