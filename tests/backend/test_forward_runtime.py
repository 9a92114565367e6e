"""The generated forward at run time: values freed after their last use (peak memory near a
hand-written forward), parameters read once per call without attribute paths, and both stay
right after .to/.half/load_state_dict/deepcopy and under torch.compile(fullgraph=True)."""
from __future__ import annotations

import ast
import copy
import re
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

import nndsl
from nndsl.compiler import build

DEEP = """
block Block(x: f32[B, T, D]) -> f32[B, T, D] {
    h = linear(gelu(linear(layernorm(x, name="ln"), 4 * D, name="up")), D, name="down")
    return x + h
}
model Deep(x: f32[B, T, D], D: int = 32, L: int = 8) -> f32[B, T, D] {
    repeat L as blocks { x = Block(x) }
    return x
}
"""


def hand_written(sd: dict, x: torch.Tensor, layers: int) -> torch.Tensor:
    """The same model as an expert writes it by hand."""
    for i in range(layers):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (x.shape[-1],), sd[p + "ln.weight"], sd[p + "ln.bias"])
        h = F.gelu(F.linear(h, sd[p + "up.weight"], sd[p + "up.bias"]))
        x = x + F.linear(h, sd[p + "down.weight"], sd[p + "down.bias"])
    return x


# --------------------------------------------------------------------------- values freed early
def test_source_deletes_each_intermediate_right_after_its_last_use():
    src = build(DEEP).python_source
    body = ast.parse(src).body[0].body
    returned = {n.id for n in ast.walk(body[-1]) if isinstance(n, ast.Name)}
    last_read: dict[str, int] = {}
    for i, stmt in enumerate(body):
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and re.fullmatch(r"v\d+", n.id):
                last_read[n.id] = i
    assert len(last_read) > 30, src
    for name, i in last_read.items():
        if name in returned:
            continue
        nxt = body[i + 1]
        assert isinstance(nxt, ast.Delete) and name in {t.id for t in nxt.targets}, \
            f"{name} is last read on line {i + 2} but not deleted right after:\n{src}"


class LiveBytes(TorchDispatchMode):
    """Peak bytes of tensor storages created by ops and still referenced from Python."""

    def __init__(self, external: list[torch.Tensor]):
        super().__init__()
        self.skip = {t.untyped_storage().data_ptr() for t in external}
        self.live: dict[int, list] = {}  # data_ptr -> [nbytes, python references]
        self.now = self.peak = 0

    def _release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[ptr]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in (out if isinstance(out, (tuple, list)) else [out]):
            if isinstance(t, torch.Tensor):
                ptr = t.untyped_storage().data_ptr()
                if ptr in self.skip:
                    continue
                if ptr not in self.live:
                    self.live[ptr] = [t.untyped_storage().nbytes(), 0]
                    self.now += self.live[ptr][0]
                    self.peak = max(self.peak, self.now)
                self.live[ptr][1] += 1
                weakref.finalize(t, self._release, ptr)
        return out


def peak_bytes(fn, x: torch.Tensor, external: list[torch.Tensor]) -> int:
    with torch.no_grad(), LiveBytes(external + [x]) as mode:
        out = fn(x)
    del out
    return mode.peak


def test_peak_memory_of_forward_is_near_a_hand_written_forward():
    layers = 8
    model = nndsl.compile(DEEP, L=layers).eval()
    sd = model.state_dict()
    x = torch.randn(4, 64, 32)
    torch.testing.assert_close(model(x), hand_written(sd, x, layers))
    ext = list(sd.values())
    ours = peak_bytes(model, x, ext)
    ref = peak_bytes(lambda t: hand_written(sd, t, layers), x, ext)
    one_block = 4 * 64 * 32 * 4 * (1 + 4 + 4 + 1)  # bytes of one block's intermediates
    assert ref > 0 and ours <= 1.25 * ref, f"generated forward peaks at {ours} bytes, hand-written at {ref}"
    assert ours < 2 * one_block, f"peak {ours} bytes: intermediates of several blocks are alive at once"


# ----------------------------------------------------------------------------- parameter reads
def test_forward_reads_no_attribute_path(monkeypatch):
    """Parameters come from rt.params (dict reads), not nn.Module.__getattr__ chains."""
    model = nndsl.compile(DEEP, L=3)
    x = torch.randn(2, 5, 32)
    model(x)
    calls = []
    orig = torch.nn.Module.__getattr__

    def counting(self, name):
        calls.append(name)
        return orig(self, name)

    monkeypatch.setattr(torch.nn.Module, "__getattr__", counting)
    model(x)
    assert calls == [], f"forward read attributes through nn.Module.__getattr__: {calls[:10]}"


def _fresh_weights(model: torch.nn.Module, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g, dtype=v.dtype) * 0.3 for k, v in model.state_dict().items()}


def test_parameters_follow_to_half_load_and_deepcopy():
    model = nndsl.compile(DEEP, L=2)
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    model.double()
    torch.testing.assert_close(model(x), hand_written(model.state_dict(), x, 2), rtol=1e-12, atol=1e-12)
    # load_state_dict, in place and by assignment
    for assign in (False, True):
        new = {k: v.double() for k, v in _fresh_weights(model, 1 + assign).items()}
        model.load_state_dict(new, assign=assign)
        torch.testing.assert_close(model(x), hand_written(new, x, 2), rtol=1e-12, atol=1e-12)
    # deepcopy: the copy reads its own parameters
    twin = copy.deepcopy(model)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
    torch.testing.assert_close(model(x), hand_written(model.state_dict(), x, 2), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(twin(x), hand_written(twin.state_dict(), x, 2), rtol=1e-12, atol=1e-12)
    # .half() and back: stale parameters would fail on a dtype mismatch
    model.half()
    assert model(x.half()).dtype == torch.float16
    model.float()
    torch.testing.assert_close(model(x.float()), hand_written(model.state_dict(), x.float(), 2), rtol=1e-5,
                               atol=1e-5)


def test_torch_compile_fullgraph_follows_loaded_weights():
    model = nndsl.compile(DEEP, L=2).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 5, 32)
    torch.testing.assert_close(compiled(x), hand_written(model.state_dict(), x, 2))
    new = _fresh_weights(model, 7)
    model.load_state_dict(new)
    torch.testing.assert_close(compiled(x), hand_written(new, x, 2))


@pytest.mark.parametrize("probs", [True, False])
def test_output_is_probs_is_decided_before_the_passes(monkeypatch, probs):
    """A pass rewriting the trailing softmax does not change how the loss reads the output."""
    import nndsl.passes as passes

    tail = "softmax(linear(x, 3), dim=-1)" if probs else "linear(x, 3)"
    src = f"model M(x: f32[B, 4]) -> f32[B, 3] {{ return {tail} }}"

    def rewrite_softmax(g, backend, verify=True):
        for n in g.nodes:
            if n.op == "softmax":
                n.op, n.attrs = "log_softmax", dict(n.attrs)  # stands in for a fused kernel op
        return g

    monkeypatch.setattr(passes, "run_passes", rewrite_softmax)
    assert nndsl.compile(src).output_is_probs is probs
