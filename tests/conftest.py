"""Test-wide setup: which of the two kernel-test groups this pytest process runs.

Triton decides between compiled and interpreted kernels when ``@triton.jit`` runs, i.e. when
``nndsl.kernels`` is first imported, so one process can hold only one of the two groups:

* the default run (``python -m pytest``): ``TRITON_INTERPRET=1``; the *interpreter* tests run
  the kernels on the CPU at tiny odd shapes; every *cuda* test is skipped.
* the CUDA run (``NNDSL_TEST_CUDA=1 python -m pytest -m cuda tests/kernels``): the interpreter
  is off; the *cuda* tests (real sizes, every dtype) run compiled on the GPU; the
  interpreter-only tests are skipped, and so is everything when there is no GPU.

Markers (tests/kernels marks its tests automatically, see ``_kernel_group``):
``cuda`` needs a GPU and runs in the CUDA run; ``interpreter`` runs on the CPU under the
interpreter; a test with both (one taking the ``device`` fixture) runs in both, on the run's
device. ``--cuda-dtypes=bfloat16,float16`` keeps only the CUDA tests of those dtypes.

This module must set the environment before anything imports triton, so it sits at the top of
the root conftest.
"""
from __future__ import annotations

import os
import tempfile

import pytest

CUDA_RUN = os.environ.get("NNDSL_TEST_CUDA", "0") == "1"

os.environ.setdefault("NNDSL_TEST", "1")
# generated kernels go to a cache of this run's own, never the user's (tests of the cache set theirs)
os.environ.setdefault("NNDSL_CACHE_DIR", tempfile.mkdtemp(prefix="nndsl-test-cache-"))
# Forced, not defaulted: a stray TRITON_INTERPRET=0 would make every kernel test fall back to
# the PyTorch reference and pass without running a kernel.
os.environ["TRITON_INTERPRET"] = "0" if CUDA_RUN else "1"

_SKIP_CUDA_TEST = ("CUDA test: runs on a GPU with NNDSL_TEST_CUDA=1 (this run interprets the kernels "
                   "on the CPU)")
_SKIP_NO_GPU = "needs a CUDA GPU: NNDSL_TEST_CUDA=1 but torch.cuda.is_available() is False"
_SKIP_INTERP_TEST = ("interpreter test: runs in the default run (TRITON_INTERPRET=1), which "
                     "NNDSL_TEST_CUDA=1 turns off")
_KERNEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernels")


def pytest_addoption(parser):
    parser.addoption("--cuda-dtypes", default="",
                     help="comma-separated dtypes (bfloat16,float16,float32): keep only the CUDA "
                          "tests parametrized by these (tests without a dtype parameter stay)")


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU; runs with NNDSL_TEST_CUDA=1 (-m cuda)")
    config.addinivalue_line("markers", "interpreter: runs the Triton kernels on the CPU under TRITON_INTERPRET=1")


def _kernel_group(item) -> None:
    """Mark a tests/kernels test by what it needs: the `device` fixture runs on either device;
    an explicit `cuda` mark or a name with "cuda" in it needs a GPU; anything else is an
    interpreter test."""
    if not str(item.path).startswith(_KERNEL_DIR):
        return
    name = getattr(item, "originalname", item.name)
    if "device" in item.fixturenames:
        item.add_marker(pytest.mark.cuda)
        item.add_marker(pytest.mark.interpreter)
    elif item.get_closest_marker("cuda") is None and "cuda" in name.lower():
        item.add_marker(pytest.mark.cuda)
    elif item.get_closest_marker("cuda") is None:
        item.add_marker(pytest.mark.interpreter)


def _dtype_names(item) -> set[str]:
    """The names of the torch dtypes among a test's parameters ("bfloat16", ...)."""
    import torch

    params = getattr(item, "callspec", None)
    values = params.params.values() if params else ()
    return {str(v).removeprefix("torch.") for v in values if isinstance(v, torch.dtype)}


def _skip_reason(item, has_gpu: bool) -> str | None:
    cuda, interp = item.get_closest_marker("cuda"), item.get_closest_marker("interpreter")
    if not CUDA_RUN:
        return _SKIP_CUDA_TEST if cuda and not interp else None
    if interp and not cuda:
        return _SKIP_INTERP_TEST
    if cuda and not has_gpu:
        return _SKIP_NO_GPU
    return None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by the markers added here
def pytest_collection_modifyitems(config, items):
    import torch

    has_gpu = CUDA_RUN and torch.cuda.is_available()
    keep_dtypes = {d.strip() for d in config.getoption("--cuda-dtypes").split(",") if d.strip()}
    kept, dropped = [], []
    for item in items:
        _kernel_group(item)
        dtypes = _dtype_names(item)
        if keep_dtypes and item.get_closest_marker("cuda") and dtypes and not dtypes & keep_dtypes:
            dropped.append(item)
            continue
        kept.append(item)
        reason = _skip_reason(item, has_gpu)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


import pytest  # noqa: E402


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (training tests on a shared 2-core machine run
    faster and steadier without intra-op threads fighting over the cores)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
