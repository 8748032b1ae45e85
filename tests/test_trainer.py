"""training/trainer.py: which variables each stage moves, r(0) keeping the
CVAE still, the batch-size check, mixed precision and XLA."""
import keras
import numpy as np
import pytest

from conftest import make_trainer, tiny_config, train
from dgam_tf.errors import UserError
from dgam_tf.training import controller, trainer as trainer_lib


def weights(models):
    return {v.path: v.numpy().copy() for m in models.values() for v in m.weights}


def changed(before, after, part):
    return {k for k in before if f"/{part}/" in f"/{k}" and not np.array_equal(before[k], after[k])}


def test_each_stage_moves_only_its_own_variables(tiny_data_dir, tiny_info, tmp_path):
    config = tiny_config(tiny_data_dir, tmp_path / "m", ramp_epochs=1)
    tr = make_trainer(config, tiny_info)
    before = weights(tr.models)
    tr.train_stage(1, trainer_lib.CVAE_STAGE)   # r(1) = 1
    mid = weights(tr.models)
    assert changed(before, mid, "cvae")
    assert not changed(before, mid, "attention") and not changed(before, mid, "classifier")
    tr.train_stage(1, trainer_lib.MODEL_STAGE)
    after = weights(tr.models)
    assert changed(mid, after, "attention") and changed(mid, after, "classifier")
    assert not changed(mid, after, "cvae")


def test_cvae_does_not_move_at_epoch_zero(tiny_data_dir, tiny_info, tmp_path):
    tr = make_trainer(tiny_config(tiny_data_dir, tmp_path / "m"), tiny_info)
    before = weights(tr.models)
    tr.train_stage(0, trainer_lib.CVAE_STAGE)    # r(0) = 0
    assert not changed(before, weights(tr.models), "cvae")


def test_batch_larger_than_training_set_is_refused(tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="exceeds the 8 training videos"):
        train(tiny_config(tiny_data_dir, tmp_path / "m", batch_size=16))


@pytest.mark.parametrize("overrides", [dict(mixed_precision="mixed_bfloat16"),
                                       dict(jit_compile=True)])
def test_speed_knobs_train_and_stay_finite(tiny_data_dir, tiny_info, tmp_path, overrides):
    config = tiny_config(tiny_data_dir, tmp_path / "m", epochs=2, **overrides)
    try:
        tr = make_trainer(config, tiny_info)
        logs = controller.Controller(tr, config.model_dir, config.train).train()
        if config.train.mixed_precision:
            assert tr.models["rgb"].attention.hidden.compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert logs and all(np.isfinite(v) for v in logs.values())
