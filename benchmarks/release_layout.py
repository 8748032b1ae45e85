"""Writes a synthetic dataset in the authors' release layout, for side-by-side runs.

The release reads THUMOS14 as numbered .npy files; this script writes the
realistic (or basic) synthetic preset that way, so that the authors' release
(run as docs/method.md §9 describes) and dgam-tf train and test on identical
features:

  python benchmarks/release_layout.py --out=/tmp/side --preset=realistic
  python -m dgam_tf.main --mode=convert --source_format=dgam \\
      --source_dir=/tmp/side/THUMOS14 --data_dir=/tmp/side/records
  python -m dgam_tf.main --flagfile=flags/thumos14.cfg --data_dir=/tmp/side/records ...

Layout written (as the release's dataset code and test loop read it):
OUT/THUMOS14/{train,test}_data/{rgb,flow}_features/<i>.npy (1-based),
{train,test}_data/{train,test}_labels.npy (multi-hot, the release's THUMOS14
class order), test_data/THUMOS14_test_vid_list.txt, test_data/gt.json
(ActivityNet JSON, subset "test") and meta.json (the generator's settings). The synthetic classes take THUMOS14's 20
names, so the release's evaluator and class order apply unchanged.
"""
import argparse
import json
import os

import numpy as np

from dgam_tf.data import annotations, realistic, records, synthetic


def write(out, preset, seed):
    """Writes the dataset under out/THUMOS14; returns that folder."""
    if preset == "realistic":
        config = realistic.RealisticConfig()
        generator = realistic.RealisticGenerator(config, seed)
    else:
        config = synthetic.SyntheticConfig(num_classes=20, num_validation=0)
        generator = synthetic.SyntheticGenerator(config, seed)
    names = annotations.class_names("thumos14")
    assert len(names) == config.num_classes == 20
    root = os.path.join(out, "THUMOS14")
    database = {}
    for split in ("train", "test"):
        folder = os.path.join(root, f"{split}_data")
        for stream in ("rgb", "flow"):
            os.makedirs(os.path.join(folder, f"{stream}_features"), exist_ok=True)
        labels, video_ids = [], []
        for index in range(config.split_size(split)):
            video = generator.video(split, index)[0]
            for stream in ("rgb", "flow"):
                np.save(os.path.join(folder, f"{stream}_features", f"{index + 1}.npy"),
                        video.features[stream])
            labels.append(np.isin(np.arange(20), video.labels).astype(np.float32))
            video_ids.append(video.video_id)
            if split == "test":
                database[video.video_id] = records.ground_truth_entry(video, "test", names)
        np.save(os.path.join(folder, f"{split}_labels.npy"), np.stack(labels))
        with open(os.path.join(folder, f"THUMOS14_{split}_vid_list.txt"), "w") as f:
            f.write("\n".join(video_ids) + "\n")
    with open(os.path.join(root, "test_data", "gt.json"), "w") as f:
        json.dump({"version": f"synthetic {preset} (seed {seed})", "database": database}, f)
    with open(os.path.join(root, "meta.json"), "w") as f:   # for the record of a run
        json.dump({"generator": f"dgam-tf synthetic {preset}", "seed": seed}, f)
    return root


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", choices=["realistic", "basic"], default="realistic")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"Wrote {write(args.out, args.preset, args.seed)}")


if __name__ == "__main__":
    main()
