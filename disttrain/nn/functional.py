"""`disttrain.nn.functional`: torch.nn.functional's names, implemented in disttrain.functional*.

One import per implementing module: functional (activations, dropout, linear, embedding),
functional_conv (convolution, pooling), functional_norm (normalisation), functional_loss
(losses), functional_attention (attention).
"""

from disttrain.functional import (  # noqa: F401
    dropout,
    dropout1d,
    dropout2d,
    elu,
    embedding,
    flatten,
    gelu,
    hardtanh,
    leaky_relu,
    linear,
    log_softmax,
    logsigmoid,
    one_hot,
    relu,
    relu6,
    sigmoid,
    silu,
    softmax,
    softmin,
    softplus,
    tanh,
)
from disttrain.functional_attention import scaled_dot_product_attention  # noqa: F401
from disttrain.functional_conv import (  # noqa: F401
    avg_pool2d,
    conv1d,
    conv2d,
    conv_transpose2d,
    max_pool2d,
)
from disttrain.functional_loss import (  # noqa: F401
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
)
from disttrain.functional_norm import (  # noqa: F401
    batch_norm,
    group_norm,
    layer_norm,
    normalize,
)
from disttrain.functional_resample import (  # noqa: F401
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    interpolate,
    pad,
)
