"""Video files -> RGB uint8 frames at a fixed rate, resampled by timestamp.

OpenCV's FFmpeg backend decodes (any container and codec that FFmpeg reads;
`opencv-contrib-python-headless`, the `video` extra). Frames are streamed:
one decoded frame is held at a time.

Resampling: output frame k shows the instant k / fps, so it is the source
frame on screen then, the last one whose timestamp is <= k / fps. A source
frame lasts until the next one's timestamp (the last one for its nominal
frame duration), so variable-rate videos come out right and a 30 fps video
gives 25 frames per second of video, dropping every sixth.
"""
import os

from dgam_tf.errors import UserError

# OpenCV and FFmpeg log decode warnings to stderr; a bad video is reported
# once, as a UserError. Set before cv2 is imported.
os.environ.setdefault("OPENCV_LOG_LEVEL", "OFF")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def cv2():
    """The cv2 module, or a UserError saying how to install it."""
    try:
        import cv2 as module
    except ImportError:
        raise UserError("--mode=extract needs OpenCV: pip install -e '.[video]' "
                        "(opencv-contrib-python-headless)") from None
    if not hasattr(module, "optflow"):
        raise UserError("OpenCV without the contrib modules (cv2.optflow) is installed; "
                        "replace it: pip uninstall opencv-python opencv-python-headless "
                        "&& pip install opencv-contrib-python-headless")
    return module


class Decoded:
    """The frames of one video at `fps`, read once.

    Iterating yields RGB uint8 frames [H, W, 3]. After the iteration,
    `num_frames` is how many were yielded and `duration` the seconds of video
    the source frames cover (last timestamp + its frame duration).

    Raises (while iterating):
      UserError: the file cannot be opened or decodes to zero frames.
    """

    def __init__(self, path, fps):
        self.path = path
        self.fps = fps
        self.num_frames = 0
        self.duration = 0.0

    def __iter__(self):
        cv = cv2()
        if not os.path.isfile(self.path):
            raise UserError(f"video {self.path}: no such file")
        capture = cv.VideoCapture(self.path)
        try:
            if not capture.isOpened():
                raise UserError(f"video {self.path}: unreadable (not a video FFmpeg can open)")
            nominal_fps = capture.get(cv.CAP_PROP_FPS)
            shown, shown_time, index = None, 0.0, 0
            while True:
                ok, frame = capture.read()
                if not ok:
                    break
                time = _timestamp(capture, cv, index, nominal_fps, shown_time)
                if shown is not None:
                    # The previous frame is on screen until this one starts.
                    yield from self._emit(shown, time)
                shown, shown_time, index = frame, time, index + 1
            if shown is None:
                raise UserError(f"video {self.path}: zero frames decoded")
            frame_duration = 1.0 / nominal_fps if nominal_fps > 0 else 1.0 / self.fps
            self.duration = shown_time + frame_duration
            yield from self._emit(shown, self.duration)
        finally:
            capture.release()

    def _emit(self, bgr, until):
        """Yields `bgr` (as RGB) for every output instant k / fps before `until`."""
        rgb = None
        # The small epsilon keeps instants equal to a timestamp (up to
        # rounding in the container's time base) on the frame that starts there.
        while self.num_frames / self.fps < until - 1e-6:
            if rgb is None:
                rgb = bgr[:, :, ::-1].copy()
            yield rgb
            self.num_frames += 1


def _timestamp(capture, cv, index, nominal_fps, previous):
    """Seconds of the frame just read: the container's timestamp, or
    index / nominal fps when the container gives none (or goes backwards)."""
    time = capture.get(cv.CAP_PROP_POS_MSEC) / 1000.0
    if index > 0 and not time > previous:
        time = index / nominal_fps if nominal_fps > 0 else previous
    return time
