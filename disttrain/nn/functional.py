"""`disttrain.nn.functional`: torch.nn.functional's names, implemented in disttrain.functional."""

from disttrain.functional import (  # noqa: F401
    avg_pool2d,
    batch_norm,
    binary_cross_entropy_with_logits,
    conv2d,
    cross_entropy,
    dropout,
    embedding,
    flatten,
    gelu,
    layer_norm,
    leaky_relu,
    linear,
    log_softmax,
    logsigmoid,
    max_pool2d,
    mse_loss,
    nll_loss,
    one_hot,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from disttrain.functional_attention import scaled_dot_product_attention  # noqa: E402, F401
