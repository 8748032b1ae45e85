"""The client's `--video` path: a video file -> detections, through the
served `i3d` and `dgam` models (savedmodel/README.md, "From a video file").

On the client: decoding at 25 fps, resize and centre crop, and TV-L1 flow
(the extraction's recipe: `pipeline.decode_clips` and `ClipInputs`, a
thread per core for the flow). TV-L1 is not a TensorFlow op, so it cannot
run in the server.
On the server: each stream's I3D (`i3d`, signatures `rgb_uint8` and `flow`),
then localization (`dgam`, signature `localize`, sent by serving/client.py)
on the video's features [T, 1024] per stream and its duration.

Clips are sent in batches whose request stays within --max_request_mb: a
clip's size is measured as it is encoded (raw bytes for gRPC, JSON text for
REST: `json_array`), so a request is as many clips as fit. RGB goes as uint8 frames, a
quarter of float32's bytes; flow can only go as float32.
"""
import collections
import concurrent.futures
import json
import os
import threading

import numpy as np

from dgam_tf.errors import UserError
from dgam_tf.export.signatures import I3D_MODEL_NAME, RGB_UINT8, i3d_request
from dgam_tf.features.recipe import FEATURE_DIM
from dgam_tf.mode_config import ExtractConfig
from dgam_tf.serving import transport

# The i3d signature each stream's clips are sent to.
SIGNATURES = {"rgb": RGB_UINT8, "flow": "flow"}
# Bytes of a request besides its clips' (names, shapes, JSON brackets).
REQUEST_OVERHEAD = 4096
MB = 1 << 20


def json_array(x):
    """An array as JSON text of nested lists, without spaces; floats in their
    shortest float32 form, which reads back to the same float32 in about
    half the text of Python's float64 digits (a 16 x 224 x 224 flow clip:
    20 MB, not 35)."""
    if x.dtype.kind != "f":
        return json.dumps(x.tolist(), separators=(",", ":"))
    text = x.astype(np.float32).astype(str)
    for _ in range(x.ndim):   # join the innermost axis into "[a,b,...]"
        rows = text.reshape(-1, text.shape[-1])
        text = np.array([f"[{','.join(row)}]" for row in rows]).reshape(text.shape[:-1])
    return text.item()


def clip_inputs(path, cfg, streams, workers=None):
    """Yields the inputs {stream: clip} of each segment of a video in order
    (RGB uint8 [L, S, S, 3], flow float32 [L, S, S, 2]), prepared up to
    2 x `workers` clips ahead, then its pipeline.Done (duration, frames).

    Raises:
      UserError: the video is missing, unreadable or shorter than a segment.
    """
    from dgam_tf.features import pipeline

    workers = workers or os.cpu_count() or 1
    stop = threading.Event()
    prepare = pipeline.ClipInputs(cfg, streams, stop, rgb_uint8=True)
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clip")
    ahead = collections.deque()
    try:
        for item in pipeline.decode_clips(path, path, cfg):
            if isinstance(item, pipeline.Bad):
                raise UserError(item.message)
            if isinstance(item, pipeline.Done):
                while ahead:
                    yield ahead.popleft().result()
                yield item
                return
            ahead.append(pool.submit(prepare, item))
            if len(ahead) > 2 * workers:
                yield ahead.popleft().result()
    finally:
        # A flow under way ends at its next frame pair (an error, Ctrl-C).
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


class I3DClient:
    """Sends clips to the served I3D over one protocol, in requests of at
    most `max_bytes`.

    Args:
      args: the command line's (protocol, server, timeout, max_request_mb).
    The largest request is args.max_request_mb, `max_bytes` in bytes.
    """

    def __init__(self, args):
        self._args = args
        self.max_bytes = int(args.max_request_mb * MB)
        # One channel for all of a run's batches.
        self._stub = transport.make_stub(args.server) if args.protocol == "grpc" else None

    def encode(self, clip):
        """A clip as it travels: raw for gRPC, JSON text for REST."""
        return clip if self._args.protocol == "grpc" else json_array(clip).encode()

    def send(self, stream, encoded):
        """Features [n, 1024] float32 of n encoded clips of `stream`.

        Raises:
          UserError: the served model answered with another shape.
        """
        signature = SIGNATURES[stream]
        if self._args.protocol == "grpc":
            request = i3d_request(signature, np.stack(encoded))
            features = transport.grpc_predict(request, self._args, self._stub)["features"]
        else:
            body = b"".join([b'{"signature_name": "', signature.encode(),
                             b'", "inputs": {"clips": [', b",".join(encoded), b"]}}"])
            url = transport.rest_url(self._args.server, I3D_MODEL_NAME)
            features = transport.rest_predict(url, body, self._args.timeout)["features"]
        features = np.asarray(features)
        if features.shape != (len(encoded), FEATURE_DIM):
            raise UserError(f"the served '{I3D_MODEL_NAME}' model answered {stream} features "
                            f"of shape {list(features.shape)} for {len(encoded)} clips, not "
                            f"[{len(encoded)}, {FEATURE_DIM}] (serve a --mode=export_i3d "
                            "export as that model)")
        return features


def video_features(path, cfg, streams, i3d_client):
    """One video's features through the served I3D.

    Args:
      path: the video file.
      cfg: ExtractConfig (the recipe).
      streams: the streams to compute.
      i3d_client: an I3DClient.

    Returns:
      ({stream: float32 [T, 1024]}, duration in seconds).
    """
    pending = {s: [] for s in streams}
    sizes = dict.fromkeys(streams, REQUEST_OVERHEAD)
    features = {s: [] for s in streams}

    def flush(stream):
        features[stream].append(i3d_client.send(stream, pending[stream]))
        pending[stream], sizes[stream] = [], REQUEST_OVERHEAD

    for item in clip_inputs(path, cfg, streams):
        if not isinstance(item, dict):
            duration = item.duration
            break
        for stream, clip in item.items():
            encoded = i3d_client.encode(clip)
            size = encoded.nbytes if isinstance(encoded, np.ndarray) else len(encoded) + 1
            if REQUEST_OVERHEAD + size > i3d_client.max_bytes:
                raise UserError(f"--max_request_mb {i3d_client.max_bytes / MB:.3g} is below one "
                                f"{stream} clip ({(REQUEST_OVERHEAD + size) / MB:.2f} MB "
                                "with the request's overhead)")
            if sizes[stream] + size > i3d_client.max_bytes:
                flush(stream)
            pending[stream].append(encoded)
            sizes[stream] += size
    for stream in streams:
        if pending[stream]:
            flush(stream)
    return ({s: np.concatenate(f).astype(np.float32) for s, f in features.items()},
            duration)


def recipe(args):
    """The ExtractConfig of the command line's recipe flags (checked)."""
    return ExtractConfig(segment_frames=args.segment_frames, crop_size=args.crop_size,
                         resize_short_side=args.resize_short_side)


def read_videos(args):
    """Yields (video id, {stream: [T, 1024]}, duration) of the command line's
    --video files, one video at a time."""
    if not args.max_request_mb > 0:
        raise UserError(f"--max_request_mb must be > 0, got {args.max_request_mb:g}")
    streams = [s for s in args.streams.split(",") if s]
    if not streams or not set(streams) <= set(SIGNATURES) or len(set(streams)) < len(streams):
        raise UserError(f"--streams must be rgb, flow or rgb,flow; got {args.streams!r}")
    cfg = recipe(args)
    i3d_client = I3DClient(args)
    ids = [os.path.splitext(os.path.basename(path))[0] for path in args.video]
    twice = sorted({v for v in ids if ids.count(v) > 1})
    if twice:
        raise UserError(f"two videos named '{twice[0]}': the output names videos by file name")
    for video_id, path in zip(ids, args.video):
        yield (video_id, *video_features(path, cfg, streams, i3d_client))
