"""Converters from public feature releases to the record format.

Three source layouts (docs/data_format.md shows each with a command):

* `dgam`: the DGAM / STPN release, `{train,test}_data/{rgb,flow}_features/
  {1..N}.npy`, `{train,test}_data/{train,test}_labels.npy` (multi-hot),
  `*_vid_list.txt` and an ActivityNet-style `gt.json`.
* `wtalc`: the W-TALC / CO2-Net / DELU release, `<Name>-I3D-JOINTFeatures.npy`
  (a pickled array of per-video `[T, 2 D]` rgb+flow features) and
  `<Name>-Annotations/*.npy`.
* `npy_dir`: one `<video>.npy` per video (one stream, or rgb+flow side by
  side) and an ActivityNet/ActionFormer-style annotation JSON.

Every converter validates while it reads and writes through
writer.DatasetWriter, so a mistake raises a UserError naming the file or
video and leaves no output folder behind.

Class order. A `class_names` file (one name a line) fixes the order for any
layout. Without one: `dgam` uses the ground-truth labels sorted by Python's
string order (the order of the multi-hot columns in the THUMOS14 and
ActivityNet 1.2 releases, which are alphabetical); when they name fewer
classes than the label matrices have columns, 20 or 100 columns take the
THUMOS14 or ActivityNet 1.2 order (the sorted labels of the shipped ground
truth, dgam_tf.data.annotations). `wtalc` uses `classlist.npy`, `npy_dir`
the annotation labels sorted.

Subsets to splits (`wtalc` and `npy_dir`, case-insensitive). THUMOS14
convention: `validation` -> train, `test` -> test. When any video's subset is
`training`, the ActivityNet convention applies instead: `training` -> train,
`validation` -> test, and `testing` videos (no public labels) are skipped.
"""
import os

from dgam_tf import files
from dgam_tf.config import STREAMS
from dgam_tf.data import records, writer
from dgam_tf.data.converters import common, dgam, npy_dir, wtalc
from dgam_tf.errors import UserError

FORMATS = ("dgam", "wtalc", "npy_dir")


def convert(source_format, source_dir, out_dir, *, annotations=None, class_names=None,
            allow_pickle=False, feature_dtype="float16", stride=16, fps=25.0,
            stream=None, feature_dim=None, num_shards=4, overwrite=False):
    """Converts a public feature release into a dataset folder.

    Args:
      source_format: "dgam", "wtalc" or "npy_dir".
      source_dir: folder of the release.
      out_dir: dataset folder to create; it appears only when complete.
      annotations: annotation JSON (`dgam`: default the only `gt*.json` in
        `test_data/` or `source_dir`; `npy_dir`: default the only `*.json` in
        `source_dir`). Unused by `wtalc`.
      class_names: optional text file, one class name a line, in label order.
      allow_pickle: allow loading pickled `.npy` files (needed by `wtalc`);
        unpickling can run code hidden in the file.
      feature_dtype: "float16" or "float32", how features are stored.
      stride: frames per feature segment.
      fps: frames per second (`npy_dir`: a video's "fps" in the JSON wins).
        A segment covers stride / fps seconds.
      stream: "rgb" or "flow" to convert that stream only, None for both.
        For `npy_dir` it also says how the files are laid out: with a stream
        each file holds that one stream `[T, D]`, without one rgb and flow
        side by side `[T, 2 D]`.
      feature_dim: `npy_dir` with a stream: the stream's feature size D;
        files of width 2 D are then rgb and flow side by side, and the
        stream's half is converted.
      num_shards: record files per split.
      overwrite: replace an existing `out_dir`.

    Returns:
      The DatasetInfo written to `<out_dir>/dataset.json`.

    Raises:
      UserError: a missing, malformed or inconsistent source, naming the file
        or video; no output is left behind.
    """
    if source_format not in FORMATS:
        raise UserError(f"unknown source format '{source_format}'; expected one of {FORMATS}")
    if feature_dtype not in records.FEATURE_DTYPES:
        raise UserError(f"feature_dtype must be one of {records.FEATURE_DTYPES}, "
                        f"got '{feature_dtype}'")
    if not (stride > 0 and fps > 0):
        raise UserError(f"stride and fps must be positive, got {stride} and {fps}")
    if stream is not None and stream not in STREAMS:
        raise UserError(f"stream must be one of {STREAMS}, got '{stream}'")
    # Fail before reading what may be gigabytes of features.
    files.refuse_existing(out_dir, overwrite)
    files.require_dir(source_dir)
    names = common.read_class_names(class_names) if class_names else None
    if source_format == "dgam":
        source = dgam.read(source_dir, annotations, names, stream, stride / fps)
    elif source_format == "wtalc":
        source = wtalc.read(source_dir, names, allow_pickle, stream, stride / fps)
    else:
        source = npy_dir.read(source_dir, annotations, names, stream, stride, fps, feature_dim)
    info = records.DatasetInfo(
        class_names=list(source.class_names), streams=source.streams,
        feature_dim=source.feature_dim, feature_dtype=feature_dtype,
        name=f"{source_format}: {os.path.basename(files.abspath(source_dir).rstrip('/'))}")
    with writer.DatasetWriter(out_dir, info, overwrite=overwrite,
                              num_shards=dict.fromkeys(("train", "test"), num_shards)) as out:
        for split, video in source.videos:
            out.add(split, video)
    return info


def run(cfg):
    """--mode=convert: converts --source_dir (--source_format) into --data_dir."""
    conv, data = cfg.convert, cfg.data
    if not (conv.source_format and conv.source_dir and data.data_dir):
        raise UserError("--mode=convert needs --source_format, --source_dir and --data_dir")
    info = convert(conv.source_format, conv.source_dir, data.data_dir,
                   annotations=conv.annotations, class_names=conv.class_names,
                   allow_pickle=conv.allow_pickle, feature_dtype=conv.feature_dtype,
                   stride=conv.stride, fps=conv.fps,
                   stream=data.streams[0] if len(data.streams) == 1 else None,
                   feature_dim=data.feature_dim, overwrite=conv.overwrite)
    print(f"Wrote {data.data_dir}: " + records.split_summary(info))
    if conv.source_format == "npy_dir" and len(data.streams) == 1 and not data.feature_dim:
        print(f"note: each .npy was read as the {data.streams[0]} stream alone, D = "
              f"{info.feature_dim}; for rgb and flow side by side [T, 2 D], convert again "
              f"with --feature_dim={info.feature_dim // 2} to take the "
              f"{data.streams[0]} half, or without --streams to keep both")
