"""The recipe of the public THUMOS14 / ActivityNet I3D features (docs/features.md).

Per frame (RGB uint8 [H, W, 3] at 25 fps):
  * resized, aspect kept, to a short side of `resize_short_side` (bilinear);
  * RGB input: the centre `crop_size` crop, scaled to [-1, 1];
  * flow input: TV-L1 flow (OpenCV's defaults) from this frame's grayscale
    to the next one's, on the resized frames, then the same centre crop,
    clipped to +-`flow_bound` and divided by it.
Frames are grouped into non-overlapping clips of `segment_frames`; clip s
holds frames [s L, (s + 1) L) and their flows to the following frame. The
video's very last frame has no following frame: its flow repeats the one
before, so every clip has L flow frames and the two streams have as many
segments, floor(frames / L).
"""
import numpy as np

from dgam_tf.features import video

# Size of a segment's feature: I3D's Mixed_5c channels.
FEATURE_DIM = 1024


def resize_short_side(frame, short_side):
    """[H, W, C] uint8 -> [h, w, C] with min(h, w) = short_side, bilinear."""
    h, w = frame.shape[:2]
    scale = short_side / min(h, w)
    size = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
    if size == (w, h):
        return frame
    return video.cv2().resize(frame, size, interpolation=video.cv2().INTER_LINEAR)


def centre_crop(image, size):
    """The centre [size, size] of [H, W, ...] (the extra pixel of an odd
    margin goes to the bottom / right, as in DeepMind's and TF's crops)."""
    h, w = image.shape[:2]
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


def rgb_crop(frames, crop_size):
    """[T, H, W, 3] uint8 resized frames -> their centre [T, crop, crop, 3] uint8."""
    return np.moveaxis(centre_crop(np.moveaxis(frames, 0, 2), crop_size), 2, 0)


def rgb_input(frames, crop_size):
    """[T, H, W, 3] uint8 resized frames -> [T, crop, crop, 3] float32 in [-1, 1]."""
    return rgb_crop(frames, crop_size).astype(np.float32) / 127.5 - 1.0


def tvl1():
    """A TV-L1 solver with OpenCV's defaults (not thread-safe: one per thread)."""
    return video.cv2().optflow.DualTVL1OpticalFlow_create()


def grayscale(frame):
    """[H, W, 3] RGB uint8 -> [H, W] uint8 (ITU-R BT.601 luma, OpenCV's)."""
    return video.cv2().cvtColor(frame, video.cv2().COLOR_RGB2GRAY)


def flow(solver, previous_gray, next_gray):
    """TV-L1 flow [H, W, 2] float32 (x, y displacement in pixels) from one
    grayscale frame to the next."""
    return solver.calc(previous_gray, next_gray, None)


def flow_input(flows, crop_size, bound):
    """[T, H, W, 2] raw flow -> [T, crop, crop, 2] float32 in [-1, 1]."""
    crop = centre_crop(np.moveaxis(flows, 0, 2), crop_size)
    return np.moveaxis(np.clip(crop, -bound, bound) / bound, 2, 0).astype(np.float32)


def clip_flows(solver, grays, following, stop=None):
    """The L flows of a clip: [L, H, W, 2] from its L >= 2 grayscale frames and
    the first frame of the next clip (None at the video's end: the last flow
    is repeated). Returns None as soon as `stop` (a threading.Event) is set."""
    frames = list(grays) + ([following] if following is not None else [])
    flows = []
    for a, b in zip(frames[:-1], frames[1:]):
        if stop is not None and stop.is_set():
            return None
        flows.append(flow(solver, a, b))
    if following is None:
        flows.append(flows[-1])
    return np.stack(flows)
