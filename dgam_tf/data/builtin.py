"""The built-in datasets: writes the records of a synthetic preset, "basic"
(data/synthetic.py) or "realistic" (data/realistic.py), with their ground
truth as ActivityNet JSON."""
import os

from dgam_tf import files
from dgam_tf.config import STREAMS
from dgam_tf.data import realistic, records, synthetic, writer
from dgam_tf.errors import UserError

PRESETS = ("basic", "realistic")


def generate(out_dir, *, seed=0, num_shards=4, overwrite=False, preset="basic", **config):
    """Writes a synthetic dataset folder (splits train, validation, test).

    Args:
      out_dir: the dataset folder to create; it appears only when complete.
      seed: the same seed and config give byte-identical features.
      num_shards: record files per split (fewer for a split with fewer videos).
      overwrite: replace an existing `out_dir`.
      preset: "basic" (data/synthetic.py's generative model) or "realistic"
        (THUMOS14-like videos with I3D-like features, data/realistic.py).
      **config: fields of the preset's config (synthetic.SyntheticConfig, e.g.
        num_classes=5, feature_dim=256, num_train=200, num_validation=50,
        num_test=100, noise=1.0, context_strength=2.0; or
        realistic.RealisticConfig).

    Returns:
      The DatasetInfo written to `<out_dir>/dataset.json`.

    Raises:
      UserError: an impossible config, or `out_dir` exists without `overwrite`.
    """
    if preset == "realistic":
        config = realistic.RealisticConfig(**config)
        generator = realistic.RealisticGenerator(config, seed)
    else:
        config = synthetic.SyntheticConfig(**config)
        generator = synthetic.SyntheticGenerator(config, seed)
    info = records.DatasetInfo(
        class_names=config.class_names, streams=list(STREAMS),
        feature_dim=config.feature_dim, feature_dtype="float16",
        name=f"synthetic {preset} (seed {seed})")
    database = {}
    with writer.DatasetWriter(out_dir, info, num_shards={s: num_shards for s in synthetic.SPLITS},
                               overwrite=overwrite) as out:
        for split in synthetic.SPLITS:
            for index in range(config.split_size(split)):
                video = generator.video(split, index)[0]
                out.add(split, video)
                database[video.video_id] = records.ground_truth_entry(
                    video, split, info.class_names)
        # The ground truth as ActivityNet JSON, for --mode=eval_detections
        # (--gt_json=<out_dir>/gt.json --subset=test).
        files.atomic_write_json(os.path.join(out.folder, synthetic.GT_FILE),
                                   {"version": info.name, "database": database})
    return info


def run(cfg):
    """--mode=synth: writes the --synthetic_preset dataset to --data_dir."""
    if not cfg.data.data_dir:
        raise UserError("--mode=synth needs --data_dir (where to write the dataset)")
    info = generate(cfg.data.data_dir, seed=cfg.data.seed, overwrite=cfg.convert.overwrite,
                    preset=cfg.data.synthetic_preset)
    print(f"Wrote {cfg.data.data_dir}: " + records.split_summary(info))
