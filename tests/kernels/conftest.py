"""Kernel-test fixtures: the run's `device`, and NaN-poisoned GPU memory for the CUDA tests.

A test that takes `device` runs in both kernel-test groups (see tests/conftest.py): on the CPU
under the interpreter in the default run, compiled on the GPU with NNDSL_TEST_CUDA=1.
"""
import os

import pytest


@pytest.fixture
def device() -> str:
    """"cpu" while the root conftest has the interpreter on, else "cuda" (NNDSL_TEST_CUDA=1)."""
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"


@pytest.fixture(autouse=True)
def _poison_gpu_memory(request):
    """Before each CUDA test, fill memory the caching allocator will hand out again with 0xFF
    bytes (NaN in fp32, fp16 and bf16 alike), so an output element a kernel never writes reads
    NaN, and assert_close, which rejects non-finite values, fails on it."""
    if os.environ.get("TRITON_INTERPRET") == "1" or request.node.get_closest_marker("cuda") is None:
        yield
        return
    import torch

    if torch.cuda.is_available():
        large = torch.full((2**31,), 255, dtype=torch.uint8, device="cuda")  # 2 GiB: split for big outputs
        small = [torch.full((2**20,), 255, dtype=torch.uint8, device="cuda") for _ in range(64)]  # small pool
        del large, small
    yield
