"""The `device` fixture: the device a kernel test runs on in this pytest run.

A test that takes `device` runs in both kernel-test groups (see tests/conftest.py): on the CPU
under the interpreter in the default run, compiled on the GPU with NNDSL_TEST_CUDA=1.
"""
import os

import pytest


@pytest.fixture
def device() -> str:
    """"cpu" while the root conftest has the interpreter on, else "cuda" (NNDSL_TEST_CUDA=1)."""
    return "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
