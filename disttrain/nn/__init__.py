"""Neural-network modules with torch.nn's names, parameter layouts and initialisation."""

# NOTE: parallel is a lazy table (DistributedDataParallel lives in disttrain.distributed);
# importing it here imports nothing else, and makes dt.nn.parallel reachable as in torch
from disttrain.nn import functional, init, parallel, utils
from disttrain.nn.activation import ELU, Hardtanh, ReLU6, SiLU, Softplus
from disttrain.nn.attention import MultiheadAttention
from disttrain.nn.conv import AvgPool2d, Conv1d, Conv2d, ConvTranspose2d, MaxPool2d
from disttrain.nn.layers import (
    GELU,
    Dropout,
    Dropout1d,
    Dropout2d,
    Embedding,
    Flatten,
    Identity,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ModuleDict,
    ModuleList,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Softmin,
    Tanh,
    Unflatten,
)
from disttrain.nn.loss import (
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)
from disttrain.nn.module import Module, Parameter
from disttrain.nn.normalization import BatchNorm1d, BatchNorm2d, GroupNorm, LayerNorm
from disttrain.nn.pooling import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Upsample,
    UpsamplingBilinear2d,
    UpsamplingNearest2d,
)
from disttrain.nn.rnn import GRU, LSTM, RNN, RNNBase
from disttrain.nn.rnn_cells import GRUCell, LSTMCell, RNNCell, RNNCellBase
from disttrain.nn.transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
)

__all__ = [
    "parallel",
    "Conv1d", "ConvTranspose2d",
    "functional", "init", "utils", "Module", "Parameter", "Identity", "Linear", "Conv2d",
    "MaxPool2d", "AvgPool2d", "Flatten", "Unflatten", "Dropout", "ReLU", "LeakyReLU", "Sigmoid",
    "Tanh", "GELU", "Softmax", "LogSoftmax", "Embedding", "Sequential", "ModuleList",
    "ModuleDict", "BatchNorm1d", "BatchNorm2d", "LayerNorm", "MSELoss", "CrossEntropyLoss",
    "NLLLoss", "BCEWithLogitsLoss", "MultiheadAttention",
    "RNNBase", "RNN", "LSTM", "GRU", "RNNCellBase", "RNNCell", "LSTMCell", "GRUCell",
    "TransformerEncoderLayer", "TransformerEncoder", "TransformerDecoderLayer",
    "TransformerDecoder", "Transformer",
    "SiLU", "ELU", "Softplus", "Hardtanh", "ReLU6", "Softmin", "Dropout1d", "Dropout2d",
    "GroupNorm",
    "L1Loss", "SmoothL1Loss", "HuberLoss", "BCELoss", "KLDivLoss",
    "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Upsample", "UpsamplingNearest2d",
    "UpsamplingBilinear2d",
]
