"""Checks every record of a dataset, for --skip_bad_records: which records
of which shards the readers must leave out (data.pipeline does)."""
import dataclasses
import itertools
import os

import tensorflow as tf

from dgam_tf.data import records


def scan_shard(path, info):
    """Parses every record of one shard, as the readers would.

    Returns:
      (good, readable, problems): the number of good records; the number of
      records before a break in the shard's framing (truncated, or a length
      or checksum that does not match), after which nothing more can be read
      (-1: no break); [(index, reason)] for each record that fails, the
      break included (its index is `readable`).
    """
    parse = tf.function(lambda s: records.parse_video(
                            s, info.streams, info.feature_dim, info.feature_dtype)["num_segments"],
                        input_signature=[tf.TensorSpec([], tf.string)])
    good, readable, problems = 0, -1, []
    it = iter(tf.data.TFRecordDataset(path))
    for index in itertools.count():
        try:
            serialized = next(it)
        except StopIteration:
            break
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            readable = index
            problems.append((index, records.first_line(e)))
            break
        try:
            parse(serialized)
            good += 1
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as e:
            problems.append((index, records.first_line(e)))
    return good, readable, problems


def skip_bad_records(data_dir, info, report=print):
    """--skip_bad_records: reads every record of every split and returns a
    copy of `info` whose splits count only the good videos and list the bad
    records under "bad_records" ({file: [readable, [indices]]}), which
    data.pipeline then leaves out. `report` gets one line per split with bad
    records, naming the first of them.

    A record that fails to parse or validate is skipped alone; where a
    shard's framing breaks, the rest of that shard is skipped (see
    scan_shard)."""
    splits = {}
    for split, entry in info.splits.items():
        bad, notes, good = {}, [], 0
        for name in entry["files"]:
            path = os.path.join(data_dir, name)
            shard_good, readable, problems = scan_shard(path, info)
            good += shard_good
            for i, reason in problems:
                where = f"from record {i} on" if i == readable else f"record {i}"
                notes.append(f"{path} {where}: {reason}")
            if problems:
                bad[name] = [readable, [i for i, _ in problems if i != readable]]
        splits[split] = dict(entry, num_videos=good, bad_records=bad)
        if notes or good != entry["num_videos"]:
            first = notes[0] if notes else "no read error: shards hold fewer records than " \
                "dataset.json declares (a shard cut at a record boundary?)"
            report(f"--skip_bad_records: split '{split}' keeps {good} of the "
                   f"{entry['num_videos']} videos dataset.json declares; {len(notes)} bad "
                   f"part(s), first: {first}")
    return dataclasses.replace(info, splits=splits)
