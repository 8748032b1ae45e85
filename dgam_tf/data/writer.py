"""Writes a dataset folder in the record format (records.py): shards, then
dataset.json, published whole (files.atomic_output_dir)."""
import os

import tensorflow as tf

from dgam_tf import files
from dgam_tf.data import records
from dgam_tf.errors import UserError


def shard_names(split, num_shards):
    """["train-00000-of-00004.tfrecord", ...]: the shard files of a split."""
    return [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


class DatasetWriter:
    """Writes a whole dataset folder atomically.

    Usage:
        with DatasetWriter(out_dir, info, num_shards={"train": 4}) as w:
            w.add("train", video)
    The folder appears only when the block finishes without error; each video
    is validated first (UserError names the culprit).
    """

    def __init__(self, out_dir, info, num_shards=None, overwrite=False):
        self._out_dir = out_dir
        self._info = info
        self._num_shards = num_shards or {}
        self._overwrite = overwrite
        self._writers = {}
        self._counts = {}
        self._ids = set()

    def __enter__(self):
        self._ctx = files.atomic_output_dir(self._out_dir, overwrite=self._overwrite)
        self._tmp = self._ctx.__enter__()
        return self

    @property
    def folder(self):
        """The folder being written: files put here appear with the dataset."""
        return self._tmp

    def add(self, split, video):
        records.validate_video(video, self._info)
        key = (split, video.video_id)
        if key in self._ids:
            raise UserError(f"video '{video.video_id}' appears twice in split '{split}'")
        self._ids.add(key)
        if split not in self._writers:
            n = self._num_shards.get(split, 1)
            names = shard_names(split, n)
            self._writers[split] = [tf.io.TFRecordWriter(os.path.join(self._tmp, f))
                                    for f in names]
            self._info.splits[split] = {"files": names, "num_videos": 0}
            self._counts[split] = 0
        writers = self._writers[split]
        writers[self._counts[split] % len(writers)].write(
            records.encode_video(video, self._info.feature_dtype))
        self._counts[split] += 1
        self._info.splits[split]["num_videos"] = self._counts[split]

    def __exit__(self, exc_type, exc, tb):
        for writers in self._writers.values():
            for w in writers:
                w.close()
        if exc_type is None:
            for split, writers in self._writers.items():
                # A split with fewer videos than shards: drop the empty shards.
                used = self._info.splits[split]["files"][:min(len(writers), self._counts[split])]
                for f in self._info.splits[split]["files"][len(used):]:
                    tf.io.gfile.remove(os.path.join(self._tmp, f))
                self._info.splits[split]["files"] = used
            files.atomic_write_json(os.path.join(self._tmp, records.METADATA_FILE),
                                    self._info.to_json())
        return self._ctx.__exit__(exc_type, exc, tb)
