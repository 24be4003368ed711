"""`disttrain.nn.functional`: torch.nn.functional's names, implemented in disttrain.functional*.

One import per implementing module: functional (activations, dropout, linear, normalisation,
embedding), functional_conv (convolution, pooling), functional_loss (losses),
functional_attention (attention).
"""

from disttrain.functional import (  # noqa: F401
    batch_norm,
    dropout,
    embedding,
    flatten,
    gelu,
    layer_norm,
    leaky_relu,
    linear,
    log_softmax,
    logsigmoid,
    one_hot,
    relu,
    sigmoid,
    softmax,
    softplus,
    tanh,
)
from disttrain.functional_attention import scaled_dot_product_attention  # noqa: F401
from disttrain.functional_conv import avg_pool2d, conv2d, max_pool2d  # noqa: F401
from disttrain.functional_loss import (  # noqa: F401
    binary_cross_entropy_with_logits,
    cross_entropy,
    mse_loss,
    nll_loss,
)
