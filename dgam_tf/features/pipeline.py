"""Videos -> per-segment I3D features, with decoding, flow and I3D overlapped.

Three stages joined by bounded queues, so memory stays a few batches of
clips whatever the videos' length:

  decode (one thread): frames at --fps, resized, cut into clips of
      --segment_frames (plus the next clip's first frame, for flow);
  prepare (a thread per core): the RGB crop and the clip's TV-L1 flows
      (OpenCV releases the GIL), results kept in submission order;
  I3D (the caller's thread): each video's clips in batches of
      --clips_per_batch through each stream's network.

A video's clips are batched with one another only, the last batch padded
with zeros to the full size, so each clip's feature depends on its video
alone (not on which videos ran before it): a resumed run and the Beam
pipeline compute the same numbers.
"""
import collections
import concurrent.futures
import os
import queue
import threading

import numpy as np

from dgam_tf.errors import UserError
from dgam_tf.features import recipe, video

# What the decode stage emits, per video in order: its Clips, then Done or Bad.
Clip = collections.namedtuple("Clip", "key frames following")
Done = collections.namedtuple("Done", "key num_frames duration")
Bad = collections.namedtuple("Bad", "key message")
# What `extract` yields per video: features {stream: [T, 1024] float32} or
# the one-line reason it was left out (features None).
Result = collections.namedtuple("Result", "key features num_frames duration error")

_STOP = object()


class FeatureNetworks:
    """Each stream's I3D, loaded from its weights, as one batched function.

    Args:
      weights: {stream: weights path} (weights.load_weights's paths).
      cfg: ExtractConfig (clip shape and batch size).
      mixed_precision: None or a Keras policy name ("mixed_float16", ...).
    """

    def __init__(self, weights, cfg, mixed_precision=None):
        import tensorflow as tf
        from dgam_tf.features import i3d, weights as weights_lib
        self.streams = tuple(weights)
        self.batch = cfg.clips_per_batch
        self._functions = {}
        for stream, path in weights.items():
            model = i3d.I3D(stream, dtype=mixed_precision)
            weights_lib.load_weights(model, path)
            spec = tf.TensorSpec([self.batch, cfg.segment_frames, cfg.crop_size,
                                  cfg.crop_size, i3d.STREAM_CHANNELS[stream]], tf.float32)
            self._functions[stream] = tf.function(model.features, input_signature=[spec])

    def __call__(self, stream, clips):
        """[n <= batch, L, S, S, C] float32 -> [n, 1024] float32."""
        n = len(clips)
        padded = np.zeros((self.batch,) + clips.shape[1:], np.float32)
        padded[:n] = clips
        return self._functions[stream](padded).numpy()[:n]


def decode_clips(key, path, cfg):
    """Yields the Clips of one video, then its Done (Bad if it has none, or
    fails to decode)."""
    frames = video.Decoded(path, cfg.fps)
    length, clips, buffer = cfg.segment_frames, 0, []
    try:
        for frame in frames:
            buffer.append(recipe.resize_short_side(frame, cfg.resize_short_side))
            if len(buffer) == length + 1:
                yield Clip(key, np.stack(buffer[:length]), buffer[length])
                clips, buffer = clips + 1, buffer[length:]
        if len(buffer) == length:
            yield Clip(key, np.stack(buffer), None)
            clips += 1
    except UserError as e:
        yield Bad(key, str(e))
        return
    except Exception as e:  # noqa: BLE001 - OpenCV raises cv2.error on a bad stream
        yield Bad(key, f"video {path}: cannot decode ({type(e).__name__}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else ''})")
        return
    if clips == 0:
        yield Bad(key, f"video {path}: {frames.num_frames} frames at {cfg.fps:g} fps, fewer "
                       f"than one segment of {length}")
        return
    yield Done(key, frames.num_frames, frames.duration)


class ClipInputs:
    """Turns a Clip into the networks' inputs {stream: [L, S, S, C] float32};
    with `rgb_uint8`, RGB's is the uint8 crop before scaling to [-1, 1]. One
    TV-L1 solver per thread. Once `stop` (a threading.Event) is set, the flow
    in progress ends at its next frame pair and gives None."""

    def __init__(self, cfg, streams, stop=None, rgb_uint8=False):
        self._cfg = cfg
        self._streams = streams
        self._stop = stop
        self._rgb = recipe.rgb_crop if rgb_uint8 else recipe.rgb_input
        self._local = threading.local()

    def __call__(self, clip):
        cfg, inputs = self._cfg, {}
        if "rgb" in self._streams:
            inputs["rgb"] = self._rgb(clip.frames, cfg.crop_size)
        if "flow" in self._streams:
            if not hasattr(self._local, "solver"):
                self._local.solver = recipe.tvl1()
            grays = [recipe.grayscale(f) for f in clip.frames]
            following = None if clip.following is None else recipe.grayscale(clip.following)
            flows = recipe.clip_flows(self._local.solver, grays, following, self._stop)
            if flows is None:
                return None
            inputs["flow"] = recipe.flow_input(flows, cfg.crop_size, cfg.flow_bound)
        return inputs


def extract(videos, cfg, networks, workers=None):
    """Yields a Result per video of `videos` ((key, path) pairs), in order.

    Args:
      videos: iterable of (key, path).
      cfg: ExtractConfig.
      networks: a FeatureNetworks (its streams are the ones computed).
      workers: threads preparing clips (default: one per core).
    """
    workers = workers or os.cpu_count() or 1
    stop = threading.Event()
    decoded = queue.Queue(maxsize=2 * cfg.clips_per_batch)
    prepared = queue.Queue(maxsize=2 * cfg.clips_per_batch + workers)
    inputs = ClipInputs(cfg, networks.streams, stop)
    pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="clip")

    def put(q, item):
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                pass

    def decode_all():
        for key, path in videos:
            for item in decode_clips(key, path, cfg):
                put(decoded, item)
                if stop.is_set():
                    return
        put(decoded, _STOP)

    def dispatch():
        while not stop.is_set():
            try:
                item = decoded.get(timeout=0.1)
            except queue.Empty:
                continue
            put(prepared, pool.submit(inputs, item) if isinstance(item, Clip) else item)
            if item is _STOP:
                return

    threads = [threading.Thread(target=f, daemon=True, name=f.__name__)
               for f in (decode_all, dispatch)]
    for t in threads:
        t.start()
    try:
        yield from _run_networks(prepared, networks, cfg.clips_per_batch)
    finally:
        # Native threads still decoding or in TV-L1 when the interpreter exits
        # abort it, so every stage is stopped and joined here (within a frame
        # pair's flow).
        stop.set()
        for t in threads:
            t.join()
        pool.shutdown(wait=True, cancel_futures=True)


def _run_networks(prepared, networks, batch_size):
    """Consumes the prepared queue; yields a Result per video."""
    pending, outputs = [], {s: [] for s in networks.streams}

    def flush():
        for stream in networks.streams:
            batch = np.stack([clip_inputs[stream] for clip_inputs in pending])
            outputs[stream].append(networks(stream, batch))
        pending.clear()

    while True:
        item = prepared.get()
        if item is _STOP:
            return
        if isinstance(item, concurrent.futures.Future):
            pending.append(item.result())
            if len(pending) == batch_size:
                flush()
            continue
        if isinstance(item, Done):
            if pending:
                flush()
            features = {s: np.concatenate(outputs[s]) for s in networks.streams}
            yield Result(item.key, features, item.num_frames, item.duration, None)
        else:
            yield Result(item.key, None, 0, 0.0, item.message)
        pending.clear()
        outputs = {s: [] for s in networks.streams}
