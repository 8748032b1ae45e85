"""Checks every record of a dataset, for --skip_bad_records: which records
of which shards the readers must leave out (data.pipeline does)."""
import dataclasses
import os

from dgam_tf.data import records


def scan_shard(path, info):
    """Parses every record of one shard, as the readers would.

    Returns:
      (good, readable, problems): the number of good records; the number of
      records before a break in the shard's framing (truncated, or a length
      or checksum that does not match), after which nothing more can be read
      (-1: no break); [(index, problem)] for each record that fails, the
      break included (its index is `readable`), `problem` in plain words
      (records.shard_records).
    """
    good, readable, problems = 0, -1, []
    for index, video, problem, framing in records.shard_records(path, info):
        if video is not None:
            good += 1
            continue
        problems.append((index, problem))
        if framing:
            readable = index
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
            for i, problem in problems:
                notes.append(f"{path}, {problem}" + (" (the rest of the file is skipped)"
                                                     if i == readable else ""))
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
