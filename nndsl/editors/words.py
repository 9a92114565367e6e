"""The words highlighters color, as static lists (importing the registries would import torch).

``tests/editors/test_words.py`` checks each list against its source of truth, so a builtin added to
``nndsl.layers`` or a train function added to ``nndsl.runtime.config`` fails a test until it is added here.
"""
from __future__ import annotations

# grammar/nndsl.lark's keyword tokens: BLOCK MODEL TRAIN open definitions and sections
DECLARATIONS = ("block", "model", "train")
KEYWORDS = ("return", "repeat", "as")
CONSTANTS = ("true", "false", "None")

# nndsl.ir.types.DTYPES (tensor types: f32[B, 10]) and nndsl.elaborate.SCALAR_TYPES (heads: int)
DTYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "bool")
SCALAR_TYPES = ("int", "float", "bool", "str")

# nndsl.layers.load_all(): the standard library a body calls
LAYERS = (
    "abs", "adaptive_avgpool1d", "adaptive_avgpool2d", "attention", "avgpool1d", "avgpool2d", "batchnorm",
    "cast", "cat", "causal_mask", "clamp", "concat", "conv1d", "conv2d", "conv_transpose1d",
    "conv_transpose2d", "cos", "dropout", "dropout2d", "elu", "embedding", "eq", "exp", "flatten", "ge",
    "gelu", "gru", "gt", "hardswish", "layernorm", "le", "leaky_relu", "linear", "log", "log_softmax",
    "logmel", "lstm", "lt", "max", "maximum", "maxpool1d", "maxpool2d", "mean", "min", "minimum", "ne",
    "one_hot", "pad", "permute", "pos_embedding", "pow", "relu", "reshape", "rmsnorm", "rnn", "rope",
    "rsqrt", "sigmoid", "silu", "sin", "softmax", "softplus", "split", "sqrt", "squeeze", "std", "sum",
    "tanh", "transpose", "unsqueeze", "upsample", "var", "where",
)
# nndsl.elab.scalar.SCALAR_FUNCS: compile-time functions of ints and floats
SCALAR_FUNCS = ("abs", "exp", "float", "int", "log", "max", "min", "sqrt")
BUILTINS = tuple(sorted(set(LAYERS) | set(SCALAR_FUNCS)))

# nndsl.runtime.config: DATASETS, OPTIMIZERS, SCHEDULES, METRICS; nndsl.loss_terms.LOSS_FUNCTIONS
TRAIN_FUNCTIONS = (
    "csv", "fashion_mnist", "mnist", "npz", "synthetic_regression", "text",
    "adam", "adamw", "sgd",
    "constant", "cosine", "multistep", "step",
    "binary_cross_entropy", "cross_entropy", "l1", "mse",
    "accuracy", "f1", "loss", "mae", "perplexity", "r2",
)

NAME = r"[A-Za-z_][A-Za-z0-9_]*"  # the grammar's NAME (ASCII only)
FLOAT = r"(?:\d(?:_?\d)*\.(?:\d(?:_?\d)*)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d+)?|\d(?:_?\d)*[eE][+-]?\d+"
INTEGER = r"\d(?:_?\d)*"


def alternation(words) -> str:
    """``(?:a|b|c)`` for whole words, longest first so no word hides a longer one."""
    return "(?:" + "|".join(sorted(set(words), key=lambda w: (-len(w), w))) + ")"
