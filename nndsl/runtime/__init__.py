"""Training runtime: the train-section config, datasets, the training loop, metrics, checkpoints.

``train_config`` turns a file's ``train { }`` section into a typed ``TrainConfig``;
``fit`` trains a module per that config and writes the run folder that ``nndsl.load`` reads.
"""
from .checkpoint import load_weights
from .config import TrainConfig, apply_overrides, train_config
from .rundir import RunDir, read_meta
from .train import fit

__all__ = ["TrainConfig", "train_config", "apply_overrides", "fit", "RunDir", "read_meta", "load_weights"]
