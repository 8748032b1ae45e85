"""Initialisation of every Dense layer, checked against the bounds of the
release's scheme (PyTorch nn.Linear) and of Keras' defaults."""
import numpy as np
import pytest

from dgam_tf.models.dgam import StreamModel

D, C, HIDDEN, CVAE_HIDDEN, LATENT = 300, 7, 200, 150, 40


def dense_layers(model):
    """(name, kernel [fan_in, units], bias [units]) of every layer with a kernel."""
    out = []
    for part in filter(None, (model.attention, model.classifier, model.cvae)):
        for layer in part._flatten_layers(include_self=False):
            if hasattr(layer, "kernel"):
                out.append((f"{part.name}/{layer.name}", layer.kernel.numpy(),
                            layer.bias.numpy()))
    return out


@pytest.fixture(scope="module", params=["pytorch", "glorot"])
def layers(request):
    model = StreamModel(D, C, HIDDEN, CVAE_HIDDEN, LATENT, initializer=request.param)
    model.build_all()
    return request.param, dense_layers(model)


def test_every_layer_has_the_expected_fan_in(layers):
    _, found = layers
    fan_ins = sorted(kernel.shape[0] for _, kernel, _ in found)
    # attention: D, HIDDEN; classifier: D; encoder: D+1, h, h; decoder: L+1, h, h.
    assert fan_ins == sorted([D, HIDDEN, D, D + 1, CVAE_HIDDEN, CVAE_HIDDEN,
                              LATENT + 1, CVAE_HIDDEN, CVAE_HIDDEN])


def test_weights_and_biases_follow_the_scheme(layers):
    scheme, found = layers
    for name, kernel, bias in found:
        fan_in, fan_out = kernel.shape
        if scheme == "pytorch":
            bound = 1 / np.sqrt(fan_in)
            assert np.abs(bias).max() <= bound, name
            if bias.size > 20:   # uniform on [-b, b]: spread like it
                assert np.abs(bias).max() > 0.8 * bound, name
                assert abs(bias.std() - bound / np.sqrt(3)) < 0.25 * bound / np.sqrt(3), name
        else:
            bound = np.sqrt(6 / (fan_in + fan_out))
            assert not bias.any(), name
        assert np.abs(kernel).max() <= bound * (1 + 1e-6), name
        assert np.abs(kernel).max() > 0.95 * bound, name
        # U(-b, b) has standard deviation b / sqrt(3); the sample std of n
        # draws has a relative standard error of sqrt(0.2 / n): allow 4 of them.
        np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3),
                                   rtol=4 * np.sqrt(0.2 / kernel.size), err_msg=name)
        # ... and the mean a standard error of std / sqrt(n).
        assert abs(kernel.mean()) < 4 * bound / np.sqrt(3 * kernel.size), name


def test_pytorch_scheme_is_narrower_than_glorot_on_attention_and_classifier():
    widths = {}
    for scheme in ("pytorch", "glorot"):
        model = StreamModel(1024, 20, 256, 128, 128, gam=False, initializer=scheme)
        model.build_all()
        widths[scheme] = [np.abs(k).max() for _, k, _ in dense_layers(model)]
    ratios = np.array(widths["glorot"]) / np.array(widths["pytorch"])
    # docs/method.md §4: Keras' defaults are 2-2.5x wider there.
    assert np.all((ratios > 1.9) & (ratios < 2.6)), ratios


def test_gam_and_its_ablation_start_from_the_same_attention_and_classifier():
    # Two streams built in turn, as training builds them: the w/o-GAM model's
    # attention and classifier of both streams equal the GAM model's for one
    # seed, and it keeps no CVAE variables (its checkpoints are unchanged).
    import keras
    weights, counts = {}, {}
    for gam in (True, False):
        keras.utils.set_random_seed(3)
        models = [StreamModel(12, 3, 8, 8, 4, gam=gam, name=s) for s in ("rgb", "flow")]
        for m in models:
            m.build_all()
        weights[gam] = [v.numpy() for m in models
                        for v in m.attention.weights + m.classifier.weights]
        counts[gam] = sum(len(m.weights) for m in models)
    assert len(weights[True]) == 12
    assert all(np.array_equal(a, b) for a, b in zip(weights[True], weights[False]))
    assert counts[False] == 12 and counts[True] > counts[False]
