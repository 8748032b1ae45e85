"""Request sizes and client-side seconds of `serving.client --video`, per clip.

On DeepMind's sample clip (tests/data/i3d, 79 frames of 224 x 224, written
as a 25 fps MJPG video; the recipe at short side 224, crop 224, 16-frame
clips) it measures, side by side for the first clip:

* the bytes of a clip as each protocol carries it: gRPC raw tensor bytes;
  REST JSON as the client writes it (`from_video.json_array`) and as
  `json.dumps` would; RGB as uint8 (`rgb_uint8`) and as float32 (`rgb`);
* how many clips fit a request of --max_request_mb;
* seconds per clip on the client: decode + crop + TV-L1 flow on one thread,
  and the JSON encoding.

Usage, from the repository root (pip install -e '.[video]'):
  python benchmarks/client_requests.py [--max_request_mb=32]
"""
import argparse
import json
import os
import tempfile
import time

import numpy as np

from dgam_tf.mode_config import ExtractConfig
from dgam_tf.features import video
from dgam_tf.serving import from_video

SAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "tests", "data", "i3d",
                      "v_CricketShot_g04_c01_rgb.gif")


def sample_video(folder):
    """The sample clip as a 25 fps video file; returns its path."""
    cv2 = video.cv2()
    _, frames = cv2.imreadmulti(SAMPLE)
    path = os.path.join(folder, "cricket.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 25, (224, 224))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max_request_mb", type=float, default=32.0)
    max_bytes = parser.parse_args().max_request_mb * from_video.MB
    with tempfile.TemporaryDirectory() as folder:
        cfg = ExtractConfig(resize_short_side=224, crop_size=224)
        start = time.perf_counter()
        *clips, done = from_video.clip_inputs(sample_video(folder), cfg, ("rgb", "flow"),
                                              workers=1)
        prepare_s = (time.perf_counter() - start) / len(clips)
    print(f"{len(clips)} clips, {done.duration:.2f} s of video; decode + crop + TV-L1 on one "
          f"thread: {prepare_s:.1f} s per clip")
    rgb = clips[0]["rgb"]
    inputs = {"rgb_uint8": rgb, "rgb (float32)": rgb.astype(np.float32) / 127.5 - 1,
              "flow": clips[0]["flow"]}
    print(f"{'signature':14} {'gRPC MB':>8} {'REST MB':>8} {'json.dumps':>10} "
          f"{'encode s':>8} {'clips/request gRPC, REST':>25}")
    for name, clip in inputs.items():
        start = time.perf_counter()
        rest = len(from_video.json_array(clip)) + 1
        encode_s = time.perf_counter() - start
        dumps = len(json.dumps(clip.tolist())) + 1
        fit = [int((max_bytes - from_video.REQUEST_OVERHEAD) // size)
               for size in (clip.nbytes, rest)]
        print(f"{name:14} {clip.nbytes / from_video.MB:8.1f} {rest / from_video.MB:8.1f} "
              f"{dumps / from_video.MB:10.1f} {encode_s:8.2f} {fit[0]:>17}, {fit[1]}")


if __name__ == "__main__":
    main()
