"""The two-stage loop: which variables each stage moves, resuming, the
baseline without GAM, numerics, the model_dir lock, profiling, mixed precision
and XLA."""
import glob
import json
import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import make_trainer, tiny_config, train
from dgam_tf import flags as dgam_flags
from dgam_tf import main
from dgam_tf.errors import UserError
from dgam_tf.models import io as model_io
from dgam_tf.training import controller, losses, trainer as trainer_lib


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


def test_resumed_run_equals_uninterrupted_run(tiny_data_dir, tmp_path):
    tf.config.experimental.enable_op_determinism()
    train(tiny_config(tiny_data_dir, tmp_path / "full", epochs=2, ramp_epochs=1))
    train(tiny_config(tiny_data_dir, tmp_path / "part", epochs=1, ramp_epochs=1))
    train(tiny_config(tiny_data_dir, tmp_path / "part", epochs=2, ramp_epochs=1))  # resumes
    a, _, _ = model_io.load_models(str(tmp_path / "full"))
    b, _, _ = model_io.load_models(str(tmp_path / "part"))
    wa, wb = list(weights(a).values()), list(weights(b).values())
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


def test_baseline_without_gam_has_no_cvae(tiny_data_dir, tmp_path):
    train(tiny_config(tiny_data_dir, tmp_path / "m", gam=False, epochs=1))
    models, settings, _ = model_io.load_models(str(tmp_path / "m"))
    assert settings.gam is False
    assert all(m.cvae is None for m in models.values())


def test_non_finite_loss_stops_with_stream_stage_epoch_step(tiny_data_dir, tmp_path, monkeypatch):
    train(tiny_config(tiny_data_dir, tmp_path / "m", epochs=1))
    monkeypatch.setattr(losses, "background_loss", lambda logits: logits[:, 0] * np.nan)
    with pytest.raises(UserError, match=r"stream rgb, stage 2, epoch 1, step 0"):
        train(tiny_config(tiny_data_dir, tmp_path / "m", epochs=2))
    ckpts = sorted(glob.glob(str(tmp_path / "m" / "checkpoints" / "ckpt-*.index")))
    assert [os.path.basename(c) for c in ckpts] == ["ckpt-1.index"]   # the good one kept


def interrupt(logits):
    raise KeyboardInterrupt   # Ctrl-C while stage 2 traces, after stage 1's steps


@pytest.mark.parametrize("background_loss, error", [
    (lambda logits: logits[:, 0] * np.nan, UserError), (interrupt, KeyboardInterrupt)])
def test_an_error_or_ctrl_c_mid_epoch_ends_the_progress_bar_line(
        tiny_data_dir, tmp_path, monkeypatch, capsys, background_loss, error):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)     # bars are for terminals
    monkeypatch.setattr(losses, "background_loss", background_loss)
    with pytest.raises(error):
        train(tiny_config(tiny_data_dir, tmp_path / "m", progress=True))
    out = capsys.readouterr().out
    assert "rgb/cvae" in out and out.endswith("\n")   # the error line then starts afresh


def test_batch_larger_than_training_set_is_refused(tiny_data_dir, tmp_path):
    with pytest.raises(UserError, match="exceeds the 8 training videos"):
        train(tiny_config(tiny_data_dir, tmp_path / "m", batch_size=16))


def test_model_dir_of_another_model_is_refused(tiny_data_dir, tiny_model_dir):
    config = tiny_config(tiny_data_dir, tiny_model_dir, latent_dim=5, epochs=1)
    with pytest.raises(UserError, match="other settings .*latent_dim"):
        train(config)


def test_piped_run_prints_a_line_per_epoch_validation_and_best_and_the_profile(
        tiny_data_dir, tmp_path, capsys):
    """stdout is not a terminal here: one line per epoch, no bar."""
    model_dir = tmp_path / "m"
    config = tiny_config(tiny_data_dir, model_dir, epochs=2, eval_every=1, num_plots=0,
                         progress=True, profile_steps=["1", "1000"])
    train(config, evaluate=True)
    out, err = capsys.readouterr()
    # 8 training videos in batches of 4, two stages, two epochs: steps 0-7.
    assert ("warning: --profile_steps=1,1000 ends after this run's steps 0-7; the trace "
            "stops there") in err
    assert glob.glob(str(model_dir / "train" / "plugins" / "profile" / "*" / "*.xplane.pb"))
    assert (f"Profile written to {model_dir}/train/plugins/profile; view it with: "
            f"tensorboard --logdir {model_dir}/train (Profile tab)") in out
    assert "\x1b" not in out and "\r" not in out
    number = r"(\d+\.\d\d)"
    scores = []
    for epoch in (1, 2):
        assert re.search(rf"^Epoch {epoch}/2: rgb/cvae \d+\.\d{{4}}, flow/cvae \S+, rgb/loss "
                         rf"\S+, flow/loss \S+ \(\d+ s\)$", out, re.M), out
        line = re.search(rf"^Epoch {epoch}: validation mAP@0.5 {number} \(rgb {number}, "
                         rf"flow {number} alone\)$", out, re.M)
        scores.append(float(line.group(1)))
    best = json.loads((model_dir / "best" / "best.json").read_text())
    kept = re.findall(rf"^Kept epoch (\d) in {model_dir}/best \(validation mAP@0.5 {number}"
                      rf"(?:, previous best {number})?\)$", out, re.M)
    assert kept[0] == ("1", f"{scores[0]:.2f}", "")            # the first is always kept
    assert len(kept) == 1 + (best["epoch"] == 2) and f"{100 * best['score']:.2f}" == kept[-1][1]

    train(config, evaluate=True)   # rerun
    out, err = capsys.readouterr()
    assert f"Nothing left to train (epoch 2 of 2, {model_dir}/checkpoints/ckpt-2); " \
           "evaluating" in out and "Epoch" not in out
    assert "--profile_steps=1,1000 starts outside this run, which trains no step" in err


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


def test_summaries_hold_losses_ramp_and_attention_histograms(tiny_data_dir, tmp_path):
    from tensorboard.backend.event_processing import event_accumulator
    train(tiny_config(tiny_data_dir, tmp_path / "m", epochs=1))
    acc = event_accumulator.EventAccumulator(str(tmp_path / "m" / "train"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    for stream in ("rgb", "flow"):
        assert {f"stage1/{stream}/cvae", f"stage2/{stream}/fg", f"stage2/{stream}/bg",
                f"stage2/{stream}/guide", f"stage2/{stream}/recon",
                f"{stream}/attention"} <= tags
    assert {"ramp", "learning_rate"} <= tags


@pytest.mark.parametrize("checkpoint, message", [
    ("bst", "--checkpoint=bst is not latest, best or a checkpoint path; {m}/checkpoints has "
            "ckpt-1, ckpt-2"),
    ("{m}/checkpoints/ckpt-7", "--checkpoint={m}/checkpoints/ckpt-7 is not latest, best or a "
                               "checkpoint path; {m}/checkpoints has ckpt-1, ckpt-2"),
    ("best", "no best checkpoint in {m} (best/ is kept by --eval_every on a validation split)"),
])
def test_a_missing_checkpoint_is_named_with_those_that_exist(tiny_model_dir, checkpoint,
                                                             message):
    with pytest.raises(UserError, match=re.escape(message.format(m=tiny_model_dir))):
        model_io.load_models(tiny_model_dir, checkpoint.format(m=tiny_model_dir))


def test_model_flags_the_user_set_that_the_model_does_not_have_are_warned_about(
        tiny_model_dir, capsys):
    # The tiny model: attention_hidden=8, latent_dim=4, gam=true. An unset
    # flag (cvae_hidden: default 128, model 8) is no one's mistake.
    fv = dgam_flags.make_config(["--latent_dim=5", "--nogam", "--attention_hidden=8",
                                 "--streams=rgb", "--mode=eval"], model_dir=tiny_model_dir)
    main.warn_ignored_model_flags(fv, dgam_flags.parse(fv))
    assert capsys.readouterr().err.splitlines() == [
        f"warning: --latent_dim=5 is ignored: the model in {tiny_model_dir} has latent_dim=4",
        f"warning: --gam=false is ignored: the model in {tiny_model_dir} has gam=true"]


def test_unwritable_model_dir_is_refused_before_any_work(tiny_data_dir, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match="cannot write to --model_dir"):
        train(tiny_config(tiny_data_dir, blocker / "run"))
