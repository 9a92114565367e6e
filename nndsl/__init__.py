"""nndsl: a compiler-backed language for neural networks.

    import nndsl
    model = nndsl.compile("examples/mnist_cnn.nn")        # a torch.nn.Module
    model = nndsl.compile(source_text, D=128)             # hyperparameter overrides
    trained = nndsl.load("runs/mnist_cnn")                # the model of a finished `nndsl run`
"""
from .compiler import Compiled, build, compile, load
from .errors import (
    NndslConfigError,
    NndslDataError,
    NndslError,
    NndslLoweringError,
    NndslNameError,
    NndslShapeError,
    NndslSyntaxError,
    NndslTypeError,
    Span,
)

__all__ = [
    "compile", "load", "build", "Compiled",
    "NndslError", "NndslSyntaxError", "NndslNameError", "NndslTypeError", "NndslShapeError",
    "NndslConfigError", "NndslDataError", "NndslLoweringError", "Span",
]
__version__ = "0.1.0"
