"""nndsl: a compiler-backed language for neural networks."""
