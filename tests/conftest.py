"""Test-wide setup. Without CUDA, Triton kernels run under the interpreter on the CPU.

This must happen before anything imports triton, so it sits at the top of the root conftest.
"""
import os

os.environ.setdefault("NNDSL_TEST", "1")
if os.environ.get("NNDSL_TEST_CUDA", "0") != "1":
    # Kernel tests run on the CPU under the interpreter unless asked to run on a GPU.
    os.environ.setdefault("TRITON_INTERPRET", "1")
