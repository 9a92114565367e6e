"""Generated kernels as torch ops: the launcher, the custom ops and their autograd.

Every generated kernel runs through one pair of ``torch.library`` custom ops, told apart by the
spec's key (a constant string), so ``torch.compile`` traces any number of them without a graph
break:

    nndsl::generated(str key, Tensor[] inputs, float[] scalars, SymInt[] seeds, bool training) -> Tensor[]
    nndsl::generated_backward(str key, Tensor[] inputs, Tensor?[] grads, float[] scalars, SymInt[] seeds,
                              bool training, bool[] need) -> Tensor[]

The backward op launches the backward kernel generated from the same spec
(``derivatives.backward_spec``: it recomputes the forward in registers) and reduces the gradient
of each broadcast input back to the input's shape; an input it was not asked for is an empty
tensor. A spec with a primitive lacking a derivative row runs PyTorch autograd over the
reference instead. Where Triton does not run (CPU without ``TRITON_INTERPRET=1``; half precision
under the interpreter, which has none) both ops run the reference (``reference.py``).

Specs are registered in this process by the grouping pass (``register``); the key names them in
the generated model code as data, never as source.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch.library import custom_op

from ...kernels._common import interpreting, use_triton
from ...kernels.dropout import draw_seed, threshold
from . import cache, derivatives, reference, source
from .kir import KernelSpec

SPECS: dict[str, KernelSpec] = {}
_backward_specs: dict[tuple, Optional[KernelSpec]] = {}


def register(spec: KernelSpec) -> str:
    key = spec.key()
    SPECS.setdefault(key, spec)
    return key


def spec_of(key: str) -> KernelSpec:
    try:
        return SPECS[key]
    except KeyError:
        raise KeyError(f"generated kernel {key!r} is not registered in this process") from None


def backward_of(spec: KernelSpec, present: tuple, need: tuple) -> Optional[KernelSpec]:
    """The backward spec (cached), or None when a primitive has no derivative row."""
    k = (spec.key(), present, need)
    if k not in _backward_specs:
        try:
            _backward_specs[k] = derivatives.backward_spec(spec, present, need)
        except derivatives.NoDerivative:
            _backward_specs[k] = None
    return _backward_specs[k]


def backward_note(spec: KernelSpec) -> str:
    """How the backward of ``spec`` runs, in words (for --explain)."""
    missing = derivatives.differentiable(spec)
    if missing is not None:
        return f"PyTorch autograd over the reference (no derivative row for {missing})"
    return "a generated kernel (recomputes the forward in registers)"


def sources(key: str, nlead: int, compute: str = "f32") -> dict[str, str]:
    """The Triton source of kernel ``key``: the forward, and the backward for every output's
    gradient and every input (what ``nndsl compile --emit triton`` prints)."""
    spec = spec_of(key)
    out = {kernel_name(spec): source.module_source(spec, kernel_name(spec), nlead, compute)}
    need = tuple(s.dtype != "bool" for s in spec.inputs)
    bspec = backward_of(spec, tuple(True for _ in spec.outputs), need)
    if bspec is not None:
        out[kernel_name(bspec)] = source.module_source(bspec, kernel_name(bspec), nlead, compute)
    return out


# ------------------------------------------------------------------------------------------ launcher
# tile sizes: (max BLOCK_C of a pointwise tile, elements per tile, max row length of ONE_PASS, looped BLOCK_C)
BLOCKS = {"cuda": (1024, 2048, 8192, 2048), "interpreter": (32, 128, 32, 16)}


def _np2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def _coalesce(lead: list[int], strides: list[list[int]]) -> tuple[list[int], list[list[int]]]:
    """Merge neighbouring leading axes that every view walks contiguously; drop size-1 axes."""
    sizes, st = [], [[] for _ in strides]
    for j, n in enumerate(lead):
        if n == 1:
            continue
        if sizes and all(s_[-1] == v[j] * n for s_, v in zip(st, strides)):
            sizes[-1] *= n
            for s_, v in zip(st, strides):
                s_[-1] = v[j]
            continue
        sizes.append(n)
        for s_, v in zip(st, strides):
            s_.append(v[j])
    return sizes, st


def kernels_run(spec: KernelSpec, tensors: Sequence[torch.Tensor]) -> bool:
    """The Triton kernel runs: on CUDA, or on the CPU under the interpreter in f32/f64 only."""
    ts = [t for t in tensors if t is not None and t.numel() > 0]
    if not ts or not use_triton(*ts):
        return False
    if all(t.is_cuda for t in ts):
        return True
    wide = ("f32", "f64", "bool", "f16")
    return all(t.dtype in (torch.float32, torch.float64, torch.bool) for t in ts) and \
        all(o.dtype in wide for o in spec.outputs) and \
        all(n.arg in wide for n in spec.nodes() if n.op == "cast")


def kernel_name(spec: KernelSpec) -> str:
    return f"gen_{spec.key()}"


def _kernel(spec: KernelSpec, nlead: int, compute: str):
    key, fn = f"{spec.key()}_l{nlead}_{compute}", kernel_name(spec)
    return cache.load(key, fn, lambda: source.module_source(spec, fn, nlead, compute), source.check_source)


def launch(spec: KernelSpec, inputs: Sequence[torch.Tensor], scalars: Sequence[float], seeds: Sequence[int],
           training: bool) -> list[torch.Tensor]:
    S = reference.iteration_shape(spec, inputs)
    dev = inputs[0].device
    compute, dtypes = reference.runtime_dtypes(spec, inputs)
    outs = [torch.empty(reference.output_shape(spec, k, S), device=dev, dtype=dtypes[k])
            for k in range(len(spec.outputs))]
    S2 = S if S else (1,)
    C, lead = S2[-1], list(S2[:-1])
    R = math.prod(lead)
    if R == 0 or C == 0:
        return reference.evaluate(spec, inputs, scalars, seeds, training, S)
    views = [reference.slot_view(spec, i, inputs[s.src], S).reshape(S2) for i, s in enumerate(spec.inputs)]
    sizes, lead_strides = _coalesce(lead, [list(v.stride()[:-1]) for v in views])
    nlead = max(len(S2) - 1, 0)
    pad = nlead - len(sizes)
    sizes = [1] * pad + sizes
    args: list = list(views) + outs + [R, C] + sizes
    for v, st in zip(views, lead_strides):
        args += [0] * pad + st + [v.stride()[-1]]
    args += [float(s) for s in scalars]
    dropout = bool(training) and any(p > 0.0 for p in spec.dropouts)
    for p, seed in zip(spec.dropouts, seeds):
        args += [int(seed), threshold(p), 1.0 / (1.0 - p)]
    max_c, tile, one_pass, loop_c = BLOCKS["interpreter" if not dev.type == "cuda" else "cuda"]
    kern = _kernel(spec, nlead, compute)
    if spec.has_reduction:
        one = _np2(C) <= one_pass
        bc = max(4, _np2(C)) if one else loop_c
        br = max(1, min(_np2(R), tile // bc))
        meta = {"ONE_PASS": one}
        grid = (-(-R // br),)
    else:
        bc = max(4, min(_np2(C), max_c))
        br = max(1, min(_np2(R), tile // bc))
        meta = {}
        grid = (-(-R // br), -(-C // bc))
    warps = 4 if br * bc <= 2048 else 8 if br * bc <= 4096 else 16  # ~16 elements a thread per value
    kern[grid](*args, BLOCK_R=br, BLOCK_C=bc, DROPOUT=dropout, num_warps=warps, **meta)
    return outs


def _forward(spec: KernelSpec, inputs, scalars, seeds, training) -> list[torch.Tensor]:
    if kernels_run(spec, inputs):
        return launch(spec, inputs, scalars, seeds, training)
    with torch.no_grad():
        return [o.contiguous() for o in reference.evaluate(spec, inputs, scalars, seeds, training)]


# --------------------------------------------------------------------------------------- custom ops
@custom_op("nndsl::generated", mutates_args=(), schema="(str key, Tensor[] inputs, float[] scalars, "
           "SymInt[] seeds, bool training) -> Tensor[]")
def _generated(key, inputs, scalars, seeds, training):
    return _forward(spec_of(key), inputs, scalars, seeds, training)


@_generated.register_fake
def _(key, inputs, scalars, seeds, training):
    spec = spec_of(key)
    S = reference.iteration_shape(spec, inputs)
    _, dtypes = reference.runtime_dtypes(spec, inputs)
    return [inputs[0].new_empty(reference.output_shape(spec, k, S), dtype=dtypes[k])
            for k in range(len(spec.outputs))]


@custom_op("nndsl::generated_backward", mutates_args=(), schema="(str key, Tensor[] inputs, Tensor?[] grads, "
           "float[] scalars, SymInt[] seeds, bool training, bool[] need) -> Tensor[]")
def _generated_backward(key, inputs, grads, scalars, seeds, training, need):
    return shares(spec_of(key), inputs, grads, scalars, seeds, training, need)


@_generated_backward.register_fake
def _(key, inputs, grads, scalars, seeds, training, need):
    spec = spec_of(key)
    S = reference.iteration_shape(spec, inputs)
    return [inputs[s.src].new_empty(_share_shape(s, S), dtype=_compute_dtype(spec, inputs))
            if want else inputs[s.src].new_empty(0) for s, want in zip(spec.inputs, _slot_need(spec, need))]


def _slot_need(spec: KernelSpec, need) -> tuple:
    return tuple(bool(need[s.src]) and s.dtype != "bool" for s in spec.inputs)


def _share_shape(slot, S: tuple) -> tuple:
    """A slot's gradient share: over all of S, or one per row (S[:-1] + [1]) for a row load."""
    if not S:
        return ()
    return S[:-1] + (1,) if slot.row else S


def _compute_dtype(spec: KernelSpec, inputs) -> torch.dtype:
    return reference.DTYPES[reference.runtime_dtypes(spec, inputs)[0]]


def shares(spec: KernelSpec, inputs, grads, scalars, seeds, training, need) -> list[torch.Tensor]:
    """Each input slot's gradient share over the iteration space (empty where not needed): what
    the backward kernel writes. ``gradients`` sums them into each input's own shape."""
    present = tuple(g is not None for g in grads)
    slot_need = _slot_need(spec, need)
    S = reference.iteration_shape(spec, inputs)
    ct = _compute_dtype(spec, inputs)
    if not any(slot_need) or not any(present):
        return [inputs[s.src].new_zeros(_share_shape(s, S), dtype=ct) if w else inputs[s.src].new_empty(0)
                for s, w in zip(spec.inputs, slot_need)]
    bspec = backward_of(spec, present, slot_need)
    if bspec is None:
        raise RuntimeError(f"generated kernel {spec.key()} has no backward kernel: its gradients come from "
                           "autograd over the reference (op._autograd_fallback)")
    b_inputs = list(inputs) + [g for g in grads if g is not None]
    b_spec = _reindex(bspec, len(inputs))
    if kernels_run(b_spec, b_inputs):
        got = launch_at(b_spec, b_inputs, scalars, seeds, training, S)
    else:
        with torch.no_grad():
            got = [t.contiguous() for t in reference.evaluate(b_spec, b_inputs, scalars, seeds, training, S)]
    it = iter(got)
    return [next(it).to(ct).reshape(_share_shape(s, S)) if w else inputs[s.src].new_empty(0)
            for s, w in zip(spec.inputs, slot_need)]


def gradients(spec: KernelSpec, inputs, slot_shares, need) -> list[Optional[torch.Tensor]]:
    """Each input's gradient in its own shape and dtype: its slots' shares, summed over the axes the
    input was broadcast along (one reduction per broadcast input; none for a full-size one)."""
    total: dict[int, torch.Tensor] = {}
    for s, g, want in zip(spec.inputs, slot_shares, _slot_need(spec, need)):
        if not want:
            continue
        x = inputs[s.src]
        shape = tuple(x.shape) + ((1,) if s.rowvec else ())
        g = g.sum_to_size(shape) if tuple(g.shape) != shape else g
        g = g.reshape(x.shape)
        total[s.src] = g if s.src not in total else total[s.src] + g
    out: list[Optional[torch.Tensor]] = []
    for i, (x, want) in enumerate(zip(inputs, need)):
        g = total.get(i)
        out.append(None if not want else (torch.zeros_like(x) if g is None else g.to(x.dtype)))
    return out


def backward(spec: KernelSpec, inputs, grads, scalars, seeds, training, need) -> list[Optional[torch.Tensor]]:
    """Each input's gradient (None where not needed): the backward kernel's shares summed into
    each input's shape, or autograd over the reference where a primitive has no derivative row."""
    present = tuple(g is not None for g in grads)
    if backward_of(spec, present, _slot_need(spec, need)) is None:
        return _autograd_fallback(spec, inputs, grads, scalars, seeds, training, need)
    return gradients(spec, inputs, shares(spec, inputs, grads, scalars, seeds, training, need), need)


def _reindex(bspec: KernelSpec, n_inputs: int) -> KernelSpec:
    """Backward slots name forward inputs by index and output gradients as -1-j: map the
    gradients onto the positions they take in the backward's input list."""
    from dataclasses import replace

    present = sorted({-1 - s.src for s in bspec.inputs if s.src < 0})
    pos = {j: n_inputs + k for k, j in enumerate(present)}
    slots = tuple(replace(s, src=pos[-1 - s.src]) if s.src < 0 else s for s in bspec.inputs)
    return replace(bspec, inputs=slots)


def launch_at(spec: KernelSpec, inputs, scalars, seeds, training, S: tuple) -> list[torch.Tensor]:
    """Launch with the forward's iteration shape (the gradient views broadcast into it)."""
    got = reference.iteration_shape(spec, inputs)
    if tuple(got) != tuple(S):  # an input the backward does not read may leave S smaller
        raise AssertionError(f"backward iteration shape {got} != forward {S}")
    return launch(spec, inputs, scalars, seeds, training)


def _autograd_fallback(spec, inputs, grads, scalars, seeds, training, need) -> list[Optional[torch.Tensor]]:
    """Each input's gradient by PyTorch autograd over the reference (a primitive has no derivative
    row). Runs outside the custom ops: autograd does not run inside one."""
    with torch.enable_grad():
        xs = [x.detach().requires_grad_(bool(w) and x.is_floating_point()) for x, w in zip(inputs, need)]
        outs = reference.evaluate(spec, xs, scalars, seeds, training)
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
        wanted = [i for i, x in enumerate(xs) if x.requires_grad]
        gs = torch.autograd.grad([o for o, _ in pairs], [xs[i] for i in wanted], [g for _, g in pairs],
                                 allow_unused=True) if pairs and wanted else []
    by_index = dict(zip(wanted, gs))
    return [None if not w else (by_index.get(i) if by_index.get(i) is not None else torch.zeros_like(x))
            for i, (x, w) in enumerate(zip(inputs, need))]


def _aligned(shape, full) -> tuple:
    """``shape`` right-aligned to ``full``'s rank (leading 1s)."""
    return (1,) * (len(full) - len(shape)) + tuple(shape)


def _setup(ctx, inputs, output):
    key, tensors, scalars, seeds, training = inputs
    ctx.key, ctx.scalars, ctx.seeds, ctx.training = key, list(scalars), list(seeds), training
    ctx.need = [t.requires_grad for t in tensors]
    ctx.save_for_backward(*tensors)


def _grad(ctx, grads):
    tensors = list(ctx.saved_tensors)
    spec, grads = spec_of(ctx.key), list(grads)
    if backward_of(spec, tuple(g is not None for g in grads), _slot_need(spec, ctx.need)) is None:
        gs = _autograd_fallback(spec, tensors, grads, ctx.scalars, ctx.seeds, ctx.training, ctx.need)
    else:
        parts = _generated_backward(ctx.key, tensors, grads, ctx.scalars, ctx.seeds, ctx.training, ctx.need)
        gs = gradients(spec, tensors, parts, ctx.need)
    # a non-empty list of numbers is one leaf to torch.library's autograd, an empty one an empty list
    return (None, gs, [] if not ctx.scalars else None,
            [] if not ctx.seeds else None, None)


_generated.register_autograd(_grad, setup_context=_setup)


# ---------------------------------------------------------------------------------------------- api
def run(key: str, inputs: Sequence[torch.Tensor], scalars: Sequence[float], training: bool) -> list[torch.Tensor]:
    """What generated model code calls: draws the dropout seeds (training only), runs the op."""
    spec = spec_of(key)
    active = bool(training) and any(p > 0.0 for p in spec.dropouts)
    seeds = [draw_seed() if active and p > 0.0 else 0 for p in spec.dropouts]
    return _generated(key, list(inputs), [float(s) for s in scalars], seeds, bool(training))


__all__ = ["register", "run", "spec_of", "launch", "backward", "shares", "gradients", "kernels_run", "BLOCKS",
           "interpreting"]
