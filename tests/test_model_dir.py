"""models/model_dir.py: restoring (the baseline without GAM has no CVAE), a missing
checkpoint named with those that exist, a model_dir of another model refused."""
import os
import re
import shutil

import pytest

from conftest import tiny_config, train
from dgam_tf.errors import UserError
from dgam_tf.models import model_dir as model_dir_lib


def test_baseline_without_gam_has_no_cvae(tiny_data_dir, tmp_path):
    train(tiny_config(tiny_data_dir, tmp_path / "m", gam=False, epochs=1))
    models, settings, _ = model_dir_lib.load_models(str(tmp_path / "m"))
    assert settings.gam is False
    assert all(m.cvae is None for m in models.values())


@pytest.mark.parametrize("checkpoint, message", [
    ("bst", "--checkpoint=bst is not latest, best, a checkpoint path or a folder of "
            "checkpoints; {m}/checkpoints has ckpt-1, ckpt-2"),
    ("{m}/checkpoints/ckpt-7", "--checkpoint={m}/checkpoints/ckpt-7 is not latest, best, a "
                               "checkpoint path or a folder of checkpoints; {m}/checkpoints "
                               "has ckpt-1, ckpt-2"),
    ("{m}/train", "--checkpoint={m}/train: no checkpoint in {m}/train nor in "
                  "{m}/train/checkpoints"),
    ("best", "no best checkpoint in {m} (best/ is kept by --eval_every on a validation split)"),
])
def test_a_missing_checkpoint_is_named_with_those_that_exist(tiny_model_dir, checkpoint,
                                                             message):
    with pytest.raises(UserError, match=re.escape(message.format(m=tiny_model_dir))):
        model_dir_lib.load_models(tiny_model_dir, checkpoint.format(m=tiny_model_dir))


def test_a_folder_of_checkpoints_means_its_latest(tiny_model_dir, tmp_path):
    checkpoints = os.path.join(tiny_model_dir, "checkpoints")
    # The same folder without TF's "checkpoint" state file: the highest number.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(checkpoints):
        if name.startswith("ckpt-"):
            shutil.copy(os.path.join(checkpoints, name), bare)
    for folder, latest in ((checkpoints, f"{checkpoints}/ckpt-2"),
                           (tiny_model_dir, f"{checkpoints}/ckpt-2"),
                           (str(bare), f"{bare}/ckpt-2")):
        assert model_dir_lib.checkpoint_path(tiny_model_dir, folder) == latest
        assert model_dir_lib.load_models(tiny_model_dir, folder)[2] == latest


def test_model_dir_of_another_model_is_refused(tiny_data_dir, tiny_model_dir):
    config = tiny_config(tiny_data_dir, tiny_model_dir, latent_dim=5, epochs=1)
    with pytest.raises(UserError, match="other settings .*latent_dim"):
        train(config)


def test_the_features_record_is_written_once_and_absent_when_unknown(tmp_path):
    model_dir_lib.write_features(str(tmp_path), None)
    assert model_dir_lib.read_features(str(tmp_path)) is None
    first, second = {"recipe": {"crop_size": 224}}, {"recipe": {"crop_size": 16}}
    model_dir_lib.write_features(str(tmp_path), first)
    model_dir_lib.write_features(str(tmp_path), second)   # a resumed run on other data
    assert model_dir_lib.read_features(str(tmp_path)) == first
