"""training/controller.py with actions.py and debug.py: resuming bit for bit,
stopping on NaN or Ctrl-C, console lines, validation and best keeping, the
profiler, summaries."""
import glob
import json
import os
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config, train
from dgam_tf.errors import UserError
from dgam_tf.models import model_dir as model_dir_lib
from dgam_tf.training import losses
from test_trainer import weights


def test_resumed_run_equals_uninterrupted_run(tiny_data_dir, tmp_path):
    tf.config.experimental.enable_op_determinism()
    train(tiny_config(tiny_data_dir, tmp_path / "full", epochs=2, ramp_epochs=1))
    train(tiny_config(tiny_data_dir, tmp_path / "part", epochs=1, ramp_epochs=1))
    train(tiny_config(tiny_data_dir, tmp_path / "part", epochs=2, ramp_epochs=1))  # resumes
    a, _, _ = model_dir_lib.load_models(str(tmp_path / "full"))
    b, _, _ = model_dir_lib.load_models(str(tmp_path / "part"))
    wa, wb = list(weights(a).values()), list(weights(b).values())
    assert len(wa) == len(wb) > 0
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)


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
            f"tensorboard --logdir {model_dir}/train (Profile tab; it needs TensorBoard's "
            "profile plugin: pip install -e '.[profile]')") in out
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
    # TensorBoard gets the mAP in percent, as the console prints it.
    from tensorboard.backend.event_processing import event_accumulator
    acc = event_accumulator.EventAccumulator(str(model_dir / "train"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    logged = [float(tf.make_ndarray(e.tensor_proto))
              for e in acc.Tensors("validation/mAP@0.5")]
    assert logged == pytest.approx(scores, abs=0.005)

    train(config, evaluate=True)   # rerun
    out, err = capsys.readouterr()
    assert f"Nothing left to train: {model_dir}/checkpoints/ckpt-2 has trained 2 epochs, " \
           "--epochs=2; evaluating it" in out and "Epoch" not in out
    assert "--profile_steps=1,1000 starts outside this run, which trains no step" in err


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
