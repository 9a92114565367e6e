"""Triton kernels (shipped as nndsl.kernels)."""
