"""Which records a run reads: --data_dir, or the built-in synthetic data,
checked against what the run asks of them."""
import os

from dgam_tf import files
from dgam_tf.data import builtin, records, scan
from dgam_tf.errors import UserError

# Bump when the synthetic generator changes, so caches are regenerated.
SYNTHETIC_VERSION = 4


def resolve_data(data):
    """(data_dir, DatasetInfo) of a DataConfig: its data_dir, or the built-in
    synthetic data, generated on first use; checks feature_dim, num_classes
    and streams against the records and, with skip_bad_records, finds the
    bad records to leave out."""
    data_dir, where = data.data_dir, data.data_dir
    if not data_dir:
        preset = data.synthetic_preset
        data_dir = os.path.join(data.synthetic_cache, f"v{SYNTHETIC_VERSION}" if preset ==
                                "basic" else f"{preset}-v{SYNTHETIC_VERSION}")
        if not files.exists(os.path.join(data_dir, records.METADATA_FILE)):
            print(f"Generating the built-in synthetic dataset ({preset}) in {data_dir} "
                  "(once)...")
            builtin.generate(data_dir, preset=preset, overwrite=True)
        where = (f"{data_dir} (no --data_dir was given, so the built-in {preset} synthetic "
                 "data was used)")
    info = records.load_info(data_dir)
    if data.skip_bad_records:
        info = scan.skip_bad_records(data_dir, info)
    if data.feature_dim is not None and data.feature_dim != info.feature_dim:
        raise UserError(f"--feature_dim={data.feature_dim} but the records have feature size "
                        f"{info.feature_dim}: {where}")
    if data.num_classes is not None and data.num_classes != info.num_classes:
        raise UserError(f"--num_classes={data.num_classes} but the records have "
                        f"{info.num_classes} classes: {where}")
    missing = [s for s in data.streams if s not in info.streams]
    if missing:
        raise UserError(f"--streams asks for {','.join(missing)} but the records only "
                        f"have {','.join(info.streams)}: {where}")
    return data_dir, info
