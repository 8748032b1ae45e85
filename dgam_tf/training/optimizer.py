"""Adam as the authors' release runs it (PyTorch's torch.optim.Adam).

PyTorch adds epsilon to the bias-corrected sqrt(v_hat); Keras adds it to the
uncorrected sqrt(v). Both update a variable by

    alpha_t * m / (sqrt(v) + eps_t),   alpha_t = lr sqrt(1 - b2^t) / (1 - b1^t),

Keras with eps_t = epsilon, PyTorch with eps_t = epsilon * sqrt(1 - b2^t). In
the first steps sqrt(1 - b2^t) is small (0.045 at t = 2 for b2 = 0.999), so
the two differ most where gradients are tiny.
"""
import keras
from keras import ops


class Adam(keras.optimizers.Adam):
    """keras.optimizers.Adam with PyTorch's placement of epsilon (default 1e-8).

    Its slot variables are Keras Adam's, so checkpoints of either restore into
    the other.
    """

    def __init__(self, learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8, **kwargs):
        super().__init__(learning_rate, beta_1, beta_2, epsilon, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        # (convert_to_tensor keeps a float64 variable's betas exact; ops.cast
        # would round them through float32.)
        beta_1, beta_2 = (ops.convert_to_tensor(b, dtype) for b in (self.beta_1, self.beta_2))
        bias_2 = ops.sqrt(1 - ops.power(beta_2, t))                          # sqrt(1 - b2^t)
        alpha = lr * bias_2 / (1 - ops.power(beta_1, t))
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha),
                                             ops.add(ops.sqrt(v), self.epsilon * bias_2)))
