"""Dense layers initialised as the authors' release initialises them.

The release sets no initializer, so its `nn.Linear` layers keep PyTorch's
defaults: weights and biases ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)). The
paper's loss weights were tuned under that scheme; Keras' defaults
(Glorot-uniform kernels, zero biases) are 2-2.5x wider on the attention and
classifier layers, and on realistic features that can collapse a stream
(docs/method.md §4). "glorot" keeps Keras' defaults, to show the difference.
"""
import math

import keras

INITIALIZERS = ("pytorch", "glorot")


class Dense(keras.layers.Dense):
    """keras.layers.Dense with the `initializer` scheme ("pytorch" or "glorot").

    With "pytorch", the kernel is VarianceScaling(1/3, fan_in, uniform), whose
    bound sqrt(3 * (1/3) / fan_in) is 1/sqrt(fan_in), and the bias is uniform
    within the same bound, fixed at build time when fan_in is known. Unseeded,
    both draw from Keras' global seed (keras.utils.set_random_seed).
    """

    def __init__(self, units, initializer="pytorch", **kwargs):
        if initializer not in INITIALIZERS:
            raise ValueError(f"initializer must be one of {INITIALIZERS}, got {initializer!r}")
        if initializer == "pytorch":
            kwargs.setdefault("kernel_initializer", keras.initializers.VarianceScaling(
                scale=1 / 3, mode="fan_in", distribution="uniform"))
        super().__init__(units, **kwargs)
        self.initializer = initializer

    def build(self, input_shape):
        if self.initializer == "pytorch":
            bound = 1 / math.sqrt(input_shape[-1])
            self.bias_initializer = keras.initializers.RandomUniform(-bound, bound)
        super().build(input_shape)
