"""The Inception-v1 I3D of Carreira & Zisserman (2017) as a Keras model.

"Quo Vadis, Action Recognition? A New Model and the Kinetics Dataset",
https://arxiv.org/abs/1705.07750. Layer for layer as DeepMind's
`kinetics-i3d/i3d.py` builds it (Apache-2.0): TF "SAME" padding (one more
pixel after than before on even totals), BatchNorm with epsilon 1e-3 and no
scale, max pools with "SAME" padding, and DeepMind's unit names (kept in
`I3D.units`, so `weights.py` loads checkpoints by name). Inference only: the
BatchNorm always uses its moving statistics, as a frozen feature extractor
does.
"""

import os

import keras
from keras import ops

STREAM_CHANNELS = {"rgb": 3, "flow": 2}

# Kinetics-400 class names in logit order (DeepMind's `data/label_map.txt`).
KINETICS_400_LABELS_FILE = os.path.join(os.path.dirname(__file__), "label_map.txt")

# Channels of the Inception blocks: Branch_0 1x1, Branch_1 1x1 then 3x3,
# Branch_2 1x1 then 3x3, Branch_3 (after a 3x3x3 max pool) 1x1.
_MIXED = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}

# The network up to Mixed_5c: ("unit", name, channels, kernel, stride),
# ("pool", name, window, stride) or ("mixed", name).
_LAYERS = (
    ("unit", "Conv3d_1a_7x7", 64, (7, 7, 7), (2, 2, 2)),
    ("pool", "MaxPool3d_2a_3x3", (1, 3, 3), (1, 2, 2)),
    ("unit", "Conv3d_2b_1x1", 64, (1, 1, 1), (1, 1, 1)),
    ("unit", "Conv3d_2c_3x3", 192, (3, 3, 3), (1, 1, 1)),
    ("pool", "MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    ("mixed", "Mixed_3b"),
    ("mixed", "Mixed_3c"),
    ("pool", "MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("mixed", "Mixed_4b"),
    ("mixed", "Mixed_4c"),
    ("mixed", "Mixed_4d"),
    ("mixed", "Mixed_4e"),
    ("mixed", "Mixed_4f"),
    ("pool", "MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("mixed", "Mixed_5b"),
    ("mixed", "Mixed_5c"),
)

# Endpoints in order, as DeepMind's VALID_ENDPOINTS up to Mixed_5c.
ENDPOINTS = tuple(layer[1] for layer in _LAYERS)

# The [time, height, width] window of the average pool before the logits.
POOL_WINDOW = (2, 7, 7)


def kinetics_labels():
    """The 400 Kinetics class names, index i naming logit i."""
    with open(KINETICS_400_LABELS_FILE, encoding="utf-8") as f:
        # The file opens with its licence notice, in "#" lines.
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def _max_pool(x, window, stride):
    """A TF "SAME" max pool; TF has no float16 MaxPool3D on CPU, and a max is
    exact in float32, so float16 inputs are pooled in float32."""
    if x.dtype == "float16":
        return ops.cast(ops.max_pool(ops.cast(x, "float32"), window, stride, "same"), x.dtype)
    return ops.max_pool(x, window, stride, "same")


class Unit3D(keras.layers.Layer):
    """Conv3D (TF "SAME" padding), BatchNorm without scale, then ReLU.

    Variables under DeepMind's names: `w` [kt, kh, kw, in, out], `b` [out]
    (logits only), and BatchNorm `beta`, `moving_mean`, `moving_variance` [out].
    """

    def __init__(self, channels, kernel=(1, 1, 1), stride=(1, 1, 1),
                 batch_norm=True, use_bias=False, activation=True, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        self.kernel_size = tuple(kernel)
        self.stride = tuple(stride)
        self.batch_norm = batch_norm
        self.use_bias = use_bias
        self.activation = activation

    def build(self, input_shape):
        shape = self.kernel_size + (input_shape[-1], self.channels)
        self.w = self.add_weight(shape=shape, name="w", initializer="glorot_uniform")
        self.b = (self.add_weight(shape=(self.channels,), name="b", initializer="zeros")
                  if self.use_bias else None)
        if self.batch_norm:
            # Kept float32 under mixed precision: the fold below needs them exact.
            def stat(name, init):
                return self.add_weight(shape=(self.channels,), name=name, initializer=init,
                                       trainable=name == "beta", autocast=False)
            self.beta = stat("beta", "zeros")
            self.moving_mean = stat("moving_mean", "zeros")
            self.moving_variance = stat("moving_variance", "ones")

    def call(self, x):
        """[B, T, H, W, in] -> [B, T', H', W', out] in the compute dtype."""
        x = ops.conv(x, self.w, self.stride, "same")
        if self.b is not None:
            x = x + self.b
        if self.batch_norm:
            # (x - mean) / sqrt(var + eps) + beta, folded into one multiply-add.
            scale = ops.rsqrt(self.moving_variance + 1e-3)
            shift = self.beta - self.moving_mean * scale
            x = x * ops.cast(scale, x.dtype) + ops.cast(shift, x.dtype)
        if self.activation:
            x = ops.relu(x)
        return x


class I3D(keras.Model):
    """Inception-v1 I3D for one stream.

    Args:
      stream: "rgb" (3 input channels) or "flow" (2: x and y displacement).
      num_classes: number of logits (400 for Kinetics-400, 600 for -600).
      name: model name; defaults to "i3d_<stream>".

    Input: [batch, time, height, width, channels] float32 in [-1, 1];
    DeepMind's clips are 224x224 (Mixed_5c then [T / 8, 7, 7]). Smaller
    clips (e.g. in tests) are average-pooled over their whole Mixed_5c.
    """

    def __init__(self, stream, num_classes=400, name=None, **kwargs):
        if stream not in STREAM_CHANNELS:
            raise ValueError(f"stream must be one of {sorted(STREAM_CHANNELS)}, got {stream!r}")
        super().__init__(name=name or f"i3d_{stream}", **kwargs)
        self.stream = stream
        self.channels = STREAM_CHANNELS[stream]
        self.num_classes = num_classes
        # DeepMind's unit scope (e.g. "Mixed_4b/Branch_1/Conv3d_0b_3x3") -> unit.
        self.units = {}
        for layer in _LAYERS:
            if layer[0] == "unit":
                _, scope, channels, kernel, stride = layer
                self._unit(scope, channels, kernel, stride)
            elif layer[0] == "mixed":
                scope = layer[1]
                b0, b1a, b1b, b2a, b2b, b3 = _MIXED[scope]
                # DeepMind's one odd name: Mixed_5b's Branch_2 3x3 is "0a".
                b2_3x3 = "Conv3d_0a_3x3" if scope == "Mixed_5b" else "Conv3d_0b_3x3"
                self._unit(f"{scope}/Branch_0/Conv3d_0a_1x1", b0)
                self._unit(f"{scope}/Branch_1/Conv3d_0a_1x1", b1a)
                self._unit(f"{scope}/Branch_1/Conv3d_0b_3x3", b1b, (3, 3, 3))
                self._unit(f"{scope}/Branch_2/Conv3d_0a_1x1", b2a)
                self._unit(f"{scope}/Branch_2/{b2_3x3}", b2b, (3, 3, 3))
                self._unit(f"{scope}/Branch_3/Conv3d_0b_1x1", b3)
        self._unit("Logits/Conv3d_0c_1x1", num_classes, batch_norm=False, use_bias=True,
                   activation=False)

    def _unit(self, scope, channels, kernel=(1, 1, 1), stride=(1, 1, 1), **kwargs):
        # Keras names cannot hold "/"; the scope is the key of `units`.
        self.units[scope] = Unit3D(channels, kernel, stride, name=scope.replace("/", "_"),
                                   dtype=self.dtype_policy, **kwargs)

    def build(self, input_shape=None):
        """Creates every variable by running a minimal clip through the net."""
        if not self.built:
            self.end_points(ops.zeros((1, 1, 1, 1, self.channels)))
            self.units["Logits/Conv3d_0c_1x1"](ops.zeros((1, 1, 1, 1, 1024), self.compute_dtype))
            self.built = True

    def end_points(self, x):
        """Every endpoint up to Mixed_5c of x [B, T, H, W, C]: {name: tensor}."""
        x = ops.cast(x, self.compute_dtype)
        points = {}
        for layer in _LAYERS:
            kind, scope = layer[:2]
            if kind == "unit":
                x = self.units[scope](x)
            elif kind == "pool":
                x = _max_pool(x, layer[2], layer[3])
            else:
                u = lambda name, y: self.units[f"{scope}/{name}"](y)
                b2_3x3 = "Conv3d_0a_3x3" if scope == "Mixed_5b" else "Conv3d_0b_3x3"
                x = ops.concatenate([
                    u("Branch_0/Conv3d_0a_1x1", x),
                    u("Branch_1/Conv3d_0b_3x3", u("Branch_1/Conv3d_0a_1x1", x)),
                    u(f"Branch_2/{b2_3x3}", u("Branch_2/Conv3d_0a_1x1", x)),
                    u("Branch_3/Conv3d_0b_1x1", _max_pool(x, (3, 3, 3), (1, 1, 1))),
                ], axis=-1)
            points[scope] = x
        return points

    def _pooled(self, x):
        """Mixed_5c average-pooled over [2, 7, 7] VALID, stride 1, in float32:
        [B, T', H', W', 1024] with T' = ceil(T / 8) - 1, H' = ceil(H / 32) - 6.
        On a Mixed_5c smaller than the window (clips under 9 frames or 193
        pixels) the window shrinks to the map's size: a global average, where
        DeepMind's graph would give an empty tensor."""
        mixed_5c = self.end_points(x)["Mixed_5c"]
        window = tuple(min(w, n) for w, n in zip(POOL_WINDOW, mixed_5c.shape[1:4]))
        return ops.average_pool(ops.cast(mixed_5c, "float32"), window, 1, "valid")

    def call(self, x, training=False):
        """Kinetics logits [B, num_classes] float32 of x [B, T, H, W, C],
        averaged over time (and space, which is 1x1 for 224x224 inputs)."""
        pooled = ops.cast(self._pooled(x), self.compute_dtype)
        # Dropout (keep 1.0 at inference in DeepMind's code) is left out.
        logits = self.units["Logits/Conv3d_0c_1x1"](pooled)
        return ops.mean(ops.cast(logits, "float32"), axis=(1, 2, 3))

    def features(self, x):
        """The clip feature [B, 1024] float32: pooled Mixed_5c averaged over
        the remaining positions (exactly one for a 16x224x224 clip)."""
        return ops.mean(self._pooled(x), axis=(1, 2, 3))
