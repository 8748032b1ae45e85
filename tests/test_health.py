"""Collapse detection: hand-worked cases, and a real run whose flow stream is
held at attention ~0 must say so (one line, TensorBoard scalar)."""
import numpy as np
import pytest
import tensorflow as tf

from dgam_tf.training import health
from dgam_tf.training import controller
from conftest import make_trainer, tiny_config


@pytest.mark.parametrize("attention,fg,epochs,expected", [
    (0.2, 1.0, 10, None),
    (0.009, 1.0, 1, "every segment is background"),
    (0.995, 1.0, 1, "every segment is foreground"),
    # ln(21) = 3.045: 3.0 is within 2% of it, 2.9 is not.
    (0.2, 3.0, 5, "guesses uniformly"),
    (0.2, 3.0, 4, None),      # too early to judge L_fg
    (0.2, 2.9, 5, None),
])
def test_collapse_reason(attention, fg, epochs, expected):
    reason = health.collapse_reason(attention, fg, 20, epochs)
    if expected is None:
        assert reason is None
    else:
        assert expected in reason


def test_a_collapsed_stream_is_reported_once_with_its_epoch(tiny_data_dir, tiny_info, tmp_path,
                                                             capsys):
    from tensorboard.backend.event_processing import event_accumulator
    config = tiny_config(tiny_data_dir, tmp_path / "m", epochs=3, eval_every=0)
    tr = make_trainer(config, tiny_info)
    # sigmoid(-30) ~ 1e-13: attention 0 on every segment, gradients below
    # Adam's epsilon, so the stream stays there.
    bias = tr.models["flow"].attention.score.bias
    bias.assign(np.full(bias.shape, -30.0, np.float32))
    loop = controller.Controller(tr, config.model_dir, config.train)
    loop.train()
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("warning:")]
    assert len(lines) == 1, lines
    assert "stream flow looks collapsed at epoch 1" in lines[0]
    assert "every segment is background" in lines[0]
    assert loop.collapsed["flow"] and loop.collapsed["rgb"] is None
    acc = event_accumulator.EventAccumulator(str(tmp_path / "m" / "train"),
                                             size_guidance={"tensors": 0})
    acc.Reload()
    def scalars(tag):
        return [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
    assert scalars("flow/collapsed") == [1.0, 1.0, 1.0]
    assert scalars("rgb/collapsed") == [0.0, 0.0, 0.0]
