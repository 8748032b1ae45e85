"""The Keras I3D against an independent numpy I3D, on random weights.

The numpy network below is written from DeepMind's `kinetics-i3d/i3d.py`
(its layer list, Unit3D and `tf.nn.max_pool3d` calls), not from
dgam_tf.features.i3d: convolutions as sums of im2col matrix products over
explicitly padded inputs, TF "SAME" padding computed by hand (the extra pixel
after, on even totals), max pools over -inf padding, BatchNorm with epsilon
1e-3 and no scale, in float64.
"""
import functools

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from dgam_tf.features.i3d import I3D

# DeepMind's Inception blocks: Branch_0 1x1; Branch_1 1x1 -> 3x3;
# Branch_2 1x1 -> 3x3; Branch_3 3x3x3 max pool (stride 1) -> 1x1.
INCEPTION = [
    ("Mixed_3b", 64, 96, 128, 16, 32, 32),
    ("Mixed_3c", 128, 128, 192, 32, 96, 64),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 192, 96, 208, 16, 48, 64),
    ("Mixed_4c", 160, 112, 224, 24, 64, 64),
    ("Mixed_4d", 128, 128, 256, 24, 64, 64),
    ("Mixed_4e", 112, 144, 288, 32, 64, 64),
    ("Mixed_4f", 256, 160, 320, 32, 128, 128),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 256, 160, 320, 32, 128, 128),
    ("Mixed_5c", 384, 192, 384, 48, 128, 128),
]
NUM_CLASSES = 7


def conv_units(in_channels, num_classes):
    """{DeepMind unit scope: (in, out, kernel)} of the whole network."""
    units = {"Conv3d_1a_7x7": (in_channels, 64, 7), "Conv3d_2b_1x1": (64, 64, 1),
             "Conv3d_2c_3x3": (64, 192, 3)}
    channels = 192
    for block in INCEPTION:
        if block[0].startswith("MaxPool"):
            continue
        name, b0, b1a, b1b, b2a, b2b, b3 = block
        b2_3x3 = "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"
        units.update({
            f"{name}/Branch_0/Conv3d_0a_1x1": (channels, b0, 1),
            f"{name}/Branch_1/Conv3d_0a_1x1": (channels, b1a, 1),
            f"{name}/Branch_1/Conv3d_0b_3x3": (b1a, b1b, 3),
            f"{name}/Branch_2/Conv3d_0a_1x1": (channels, b2a, 1),
            f"{name}/Branch_2/{b2_3x3}": (b2a, b2b, 3),
            f"{name}/Branch_3/Conv3d_0b_1x1": (channels, b3, 1),
        })
        channels = b0 + b1b + b2b + b3
    units["Logits/Conv3d_0c_1x1"] = (channels, num_classes, 1)
    return units


def random_weights(in_channels, seed, num_classes=NUM_CLASSES):
    """{scope: {"w", "b" | "beta", "mean", "var"}} of random float32 arrays,
    scaled (He) so that activations stay of order 1 through the network."""
    rng = np.random.default_rng(seed)
    weights = {}
    for scope, (n_in, n_out, k) in conv_units(in_channels, num_classes).items():
        fan_in = k ** 3 * n_in
        unit = {"w": rng.normal(0, np.sqrt(2 / fan_in), (k, k, k, n_in, n_out))}
        if scope.startswith("Logits"):
            unit["b"] = rng.normal(0, 0.1, n_out)
        else:
            unit.update(beta=rng.normal(0, 0.1, n_out), mean=rng.normal(0, 0.1, n_out),
                        var=rng.uniform(0.5, 1.5, n_out))
        weights[scope] = {k: v.astype(np.float32) for k, v in unit.items()}
    return weights


def same_padding(x, kernel, stride, value):
    """x [B, T, H, W, C] padded as TF "SAME" does: out = ceil(n / s), total
    padding max((out - 1) s + k - n, 0), the larger half after."""
    pads = [(0, 0)]
    for n, k, s in zip(x.shape[1:4], kernel, stride):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)], constant_values=value)


def conv3d(x, w, stride):
    """SAME conv of x [B, T, H, W, C] with w [kt, kh, kw, C, O]: one im2col
    product per temporal offset."""
    kt, kh, kw = w.shape[:3]
    if (kt, kh, kw) == (1, 1, 1) and stride == (1, 1, 1):
        return x @ w[0, 0, 0]
    x = same_padding(x, (kt, kh, kw), stride, 0.0)
    out_t = (x.shape[1] - kt) // stride[0] + 1
    out = 0.0
    for i in range(kt):
        frames = x[:, i:i + stride[0] * (out_t - 1) + 1:stride[0]]
        patches = sliding_window_view(frames, (kh, kw), axis=(2, 3))
        patches = patches[:, :, ::stride[1], ::stride[2]]  # [B, T', H', W', C, kh, kw]
        out = out + np.tensordot(patches, w[i], axes=([4, 5, 6], [2, 0, 1]))
    return out


def max_pool3d(x, window, stride):
    """SAME max pool of x [B, T, H, W, C]: padding never wins the max. A box's
    max is the max over time of the max over height of the max over width."""
    x = same_padding(x, window, stride, -np.inf)
    for axis, k, s in zip((1, 2, 3), window, stride):
        x = np.moveaxis(sliding_window_view(x, k, axis=axis).max(axis=-1), axis, 0)[::s]
        x = np.moveaxis(x, 0, axis)
    return x


def unit3d(x, unit, stride=(1, 1, 1)):
    """Conv, BatchNorm (eps 1e-3, no scale), ReLU."""
    y = conv3d(x, unit["w"].astype(np.float64), stride)
    y = (y - unit["mean"]) / np.sqrt(unit["var"] + 1e-3) + unit["beta"]
    return np.maximum(y, 0.0)


def numpy_i3d(x, weights):
    """{endpoint: array} of x [B, T, H, W, C], up to Mixed_5c, in float64."""
    x, points = x.astype(np.float64), {}
    x = points["Conv3d_1a_7x7"] = unit3d(x, weights["Conv3d_1a_7x7"], (2, 2, 2))
    x = points["MaxPool3d_2a_3x3"] = max_pool3d(x, (1, 3, 3), (1, 2, 2))
    x = points["Conv3d_2b_1x1"] = unit3d(x, weights["Conv3d_2b_1x1"])
    x = points["Conv3d_2c_3x3"] = unit3d(x, weights["Conv3d_2c_3x3"])
    x = points["MaxPool3d_3a_3x3"] = max_pool3d(x, (1, 3, 3), (1, 2, 2))
    for block in INCEPTION:
        name = block[0]
        if name.startswith("MaxPool"):
            x = points[name] = max_pool3d(x, *block[1:])
            continue
        u = {scope.split("/", 1)[1]: unit for scope, unit in weights.items()
             if scope.startswith(name + "/")}
        b2_3x3 = "Branch_2/Conv3d_0a_3x3" if name == "Mixed_5b" else "Branch_2/Conv3d_0b_3x3"
        x = points[name] = np.concatenate([
            unit3d(x, u["Branch_0/Conv3d_0a_1x1"]),
            unit3d(unit3d(x, u["Branch_1/Conv3d_0a_1x1"]), u["Branch_1/Conv3d_0b_3x3"]),
            unit3d(unit3d(x, u["Branch_2/Conv3d_0a_1x1"]), u[b2_3x3]),
            unit3d(max_pool3d(x, (3, 3, 3), (1, 1, 1)), u["Branch_3/Conv3d_0b_1x1"]),
        ], axis=-1)
    return points


def numpy_head(mixed_5c, logits_unit):
    """(logits [B, classes], feature [B, 1024]) of Mixed_5c [B, T, H, W, 1024]:
    tf.nn.avg_pool3d [1, 2, 7, 7, 1] stride 1 VALID, the 1x1x1 logits conv
    with bias, then the mean over the remaining positions."""
    pooled = sliding_window_view(mixed_5c, (2, 7, 7), axis=(1, 2, 3)).mean(axis=(-3, -2, -1))
    logits = pooled @ logits_unit["w"][0, 0, 0] + logits_unit["b"]
    return logits.mean(axis=(1, 2, 3)), pooled.mean(axis=(1, 2, 3))


def keras_i3d(stream, weights):
    """The Keras I3D with `weights` assigned to its units by DeepMind's scope."""
    model = I3D(stream, num_classes=weights["Logits/Conv3d_0c_1x1"]["b"].shape[0])
    model.build()
    assert sorted(model.units) == sorted(weights)
    for scope, unit in weights.items():
        layer = model.units[scope]
        layer.w.assign(unit["w"])
        if "b" in unit:
            layer.b.assign(unit["b"])
        else:
            layer.beta.assign(unit["beta"])
            layer.moving_mean.assign(unit["mean"])
            layer.moving_variance.assign(unit["var"])
    return model


def assert_close(got, want, what):
    """Equal to 1e-4 of the reference's largest magnitude."""
    got = np.asarray(got, np.float64)
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = np.abs(want).max()
    assert scale > 0, what
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * scale, err_msg=what)


@functools.cache
def network(stream):
    """(Keras I3D, its random weights) of a stream, built once."""
    channels = {"rgb": 3, "flow": 2}[stream]
    weights = random_weights(channels, seed=channels)
    return keras_i3d(stream, weights), weights


# Even sizes (asymmetric padding), odd ones, and a single frame.
@pytest.mark.parametrize("stream, shape", [("rgb", (2, 8, 32, 32)), ("flow", (1, 9, 33, 35)),
                                           ("rgb", (1, 1, 17, 20))])
def test_every_endpoint_matches_numpy(stream, shape):
    model, weights = network(stream)
    rng = np.random.default_rng(sum(shape))
    x = rng.uniform(-1, 1, shape + (model.channels,)).astype(np.float32)
    want = numpy_i3d(x, weights)
    got = model.end_points(x)
    assert list(got) == list(want)
    for name in want:
        assert_close(got[name], want[name], f"{stream} {name} of {shape}")


def test_logits_and_features_match_numpy():
    """The head on Mixed_5c (the trunk is the endpoints test's): 9 frames of
    193 x 225 px make Mixed_5c [2, 7, 8], the smallest that reaches the
    logits, here with two pooled positions to average."""
    model, weights = network("rgb")
    x = np.random.default_rng(1).uniform(-1, 1, (1, 9, 193, 225, 3)).astype(np.float32)
    mixed_5c = model.end_points(x)["Mixed_5c"].numpy().astype(np.float64)
    assert mixed_5c.shape == (1, 2, 7, 8, 1024)
    logits, feature = numpy_head(mixed_5c, weights["Logits/Conv3d_0c_1x1"])
    assert_close(model(x), logits, "logits")
    assert_close(model.features(x), feature, "features")
