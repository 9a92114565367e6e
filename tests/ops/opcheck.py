"""Helpers for the op and builtin tests: build tiny graphs and run their emitted code.

``run`` evaluates a graph the way the generated ``forward`` does — each node's ``emit``
expression ``eval``-ed in a namespace with torch, F, rt, ``self`` (only ``training``) and the
symbolic dims bound to ints — and checks every node's runtime shape and dtype against what
inference said. It does not use the real backend (backend/torch_codegen.py).
"""
from __future__ import annotations

import re
import types
from typing import Any, Optional

import sympy
import torch
import torch.nn.functional as F

from nndsl.backend import rt
from nndsl.ir import dims as D
from nndsl.ir.builder import Builder
from nndsl.ir.graph import Graph, Value
from nndsl.ir.types import DTYPES, TensorType
from nndsl.layers import registry as L
from nndsl.ops import registry as R

# graphs are typed f32 but tests run them in float64 (a value typed f32 may be either at run time:
# causal_mask and int true division make float32 tensors whatever the inputs' precision)
RUN_DTYPE = {"f32": torch.float64}
RUN_OK = {"f32": (torch.float32, torch.float64)}


def tt(spec: str) -> TensorType:
    """'f32[B, 2*T, 5]' -> TensorType; names become symbolic dims (positive ints)."""
    m = re.fullmatch(r"(\w+)\[(.*)\]", spec.replace(" ", ""))
    assert m, spec
    dims = []
    for part in filter(None, m.group(2).split(",")):
        syms = {n: D.symbol(n) for n in re.findall(r"[A-Za-z_]\w*", part)}
        dims.append(int(part) if re.fullmatch(r"-?\d+", part) else D.norm(sympy.sympify(part, locals=syms)))
    return TensorType(tuple(dims), m.group(1))


def new(**inputs: str) -> tuple[Builder, list[Value]]:
    """A Builder over a fresh graph with inputs ``name=type-spec``; symbols in order of appearance."""
    g = Graph("t")
    vals = []
    for name, spec in inputs.items():
        t = tt(spec)
        for d in t.shape:
            for s in sorted(D.free_symbols(d)):
                if s not in g.symbols:
                    g.symbols.append(s)
        vals.append(g.add_input(name, t))
    return Builder(g), vals


def infer(op: str, specs: list, attrs: Optional[dict] = None, names: Optional[list] = None) -> list[TensorType]:
    """Run op inference directly on type specs (raises registry.InferError)."""
    types_ = [tt(s) if isinstance(s, str) else s for s in specs]
    ctx = R.InferCtx(op, types_, dict(attrs or {}), list(names or [None] * len(types_)))
    return R.get(op).infer(ctx)


def shape(op: str, specs: list, attrs: Optional[dict] = None, i: int = 0) -> str:
    """The i-th inferred output type of ``op`` as text."""
    return str(infer(op, specs, attrs)[i])


def fails(op: str, specs: list, attrs: Optional[dict] = None, names: Optional[list] = None,
          kind: Optional[type] = None) -> str:
    """The message of the InferError that inference of ``op`` must raise (of class ``kind`` if given)."""
    import pytest

    with pytest.raises(R.InferError) as ei:
        infer(op, specs, attrs, names)
    if kind is not None:
        assert ei.value.kind is kind, f"{op}: expected a {kind.__name__}, got {ei.value.kind.__name__}"
    return ei.value.message


def call(b: Builder, name: str, *args: Any, inst: Optional[str] = None, **kwargs: Any) -> Any:
    """Call builtin ``name`` as the elaborator would: bind args, fill defaults, open the instance scope."""
    bi = L.get(name)
    assert bi is not None, f"no builtin {name}"
    values: dict[str, Any] = {}
    names = [a.name for a in bi.args]
    if bi.variadic is not None:
        values[bi.variadic] = list(args)
    else:
        values.update(zip(names, args))
    values.update(kwargs)
    for a in bi.args:
        values.setdefault(a.name, None if a.optional else a.default)
    ordered = [values[a.name] for a in bi.args]  # the elaborator passes arguments in signature order
    if bi.stateful:
        with b.child(inst or b.unique_name(name)):
            out = bi.fn(b, *ordered)
    else:
        out = bi.fn(b, *ordered)
    return tuple(out) if isinstance(out, list) else out


def concrete(t: TensorType, sizes: dict[str, int]) -> tuple[int, ...]:
    subs = {D.symbol(k): v for k, v in sizes.items()}
    return tuple(d if isinstance(d, int) else int(d.subs(subs)) for d in t.shape)


def make_params(g: Graph, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random float64 values for every param (so ones/zeros inits do not hide mistakes)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for p in g.params.values():
        dt = RUN_DTYPE.get(p.dtype, DTYPES[p.dtype])
        if not dt.is_floating_point:
            out[p.name] = torch.zeros(p.shape, dtype=dt)
        elif p.name.endswith("running_var"):
            out[p.name] = torch.rand(p.shape, generator=gen, dtype=dt) + 0.5
        else:
            out[p.name] = torch.randn(p.shape, generator=gen, dtype=dt) * 0.5
    return out


def emitted(g: Graph) -> list[str]:
    """The emitted expression of every non-param node (for reading failures)."""
    out = []
    for n in g.nodes:
        if n.op != "param":
            out.append(R.get(n.op).emit(R.EmitCtx(n, [f"v{v.id}" for v in n.inputs], n.attrs)))
    return out


def run(g: Graph, inputs: list[torch.Tensor], sizes: dict[str, int], params: Optional[dict] = None,
        outputs: Optional[list[Value]] = None, training: bool = False) -> list[torch.Tensor]:
    """Evaluate ``g`` node by node through each op's emit; returns the values of ``outputs``."""
    params = params if params is not None else {}
    env: dict[int, torch.Tensor] = {v.id: x for v, x in zip(g.inputs, inputs)}
    ns: dict[str, Any] = {"torch": torch, "F": F, "rt": rt,
                          "self": types.SimpleNamespace(training=training), **sizes}
    for n in g.nodes:
        if n.op == "param":
            res: Any = params[n.attrs["name"]]
        else:
            names = [f"v{v.id}" for v in n.inputs]
            code = R.get(n.op).emit(R.EmitCtx(n, names, n.attrs))
            local = dict(ns, **{nm: env[v.id] for nm, v in zip(names, n.inputs)})
            res = eval(code, local)  # noqa: S307 - this is the point of the test
        res = list(res) if len(n.outputs) > 1 else [res]
        assert len(res) == len(n.outputs), f"{n.op}: {len(res)} values for {len(n.outputs)} outputs"
        for v, x in zip(n.outputs, res):
            want = concrete(v.type, sizes)
            assert tuple(x.shape) == want, f"{n.op}: runtime shape {tuple(x.shape)} != inferred {v.type} = {want}"
            ok = RUN_OK.get(v.type.dtype, (DTYPES[v.type.dtype],))
            assert x.dtype in ok, f"{n.op}: runtime dtype {x.dtype} != inferred {v.type.dtype}"
            env[v.id] = x
    return [env[v.id] for v in (outputs if outputs is not None else g.outputs)]


def close(out: torch.Tensor, ref: torch.Tensor, tol: float = 1e-10) -> None:
    """float64 comparison: same shape, max abs difference under ``tol`` (scaled by the reference)."""
    assert out.shape == ref.shape, f"shape {tuple(out.shape)} != reference {tuple(ref.shape)}"
    if not out.dtype.is_floating_point:
        assert torch.equal(out, ref), f"values differ:\n{out}\nvs\n{ref}"
        return
    fin = torch.isfinite(ref)
    assert torch.equal(fin, torch.isfinite(out)), "non-finite entries differ"
    assert torch.equal(out[~fin], ref[~fin]), "infinities differ"
    err = (out[fin] - ref[fin]).abs().max().item() if fin.any() else 0.0
    scale = max(1.0, ref[fin].abs().max().item() if fin.any() else 1.0)
    assert err <= tol * scale, f"max abs error {err:.3e} > {tol:.0e} * {scale:.3g}"


def rand_input(t: TensorType, sizes: dict[str, int], high: int = 5) -> torch.Tensor:
    """A fresh random tensor for an input of type ``t`` (float64 for float types)."""
    shape = concrete(t, sizes)
    if t.is_float:
        return torch.randn(shape, dtype=RUN_DTYPE.get(t.dtype, DTYPES[t.dtype]))
    if t.dtype == "bool":
        return torch.rand(shape) > 0.5
    return torch.randint(0, high, shape, dtype=DTYPES[t.dtype])


def check(specs: dict[str, str], build, ref, sizes: dict[str, int], tol: float = 1e-10, training: bool = False,
          inputs: Optional[list] = None):
    """Build a graph over inputs ``specs`` with ``build(b, *values)``, run it on random inputs and compare
    each output with ``ref(*tensors, P=params)``. Returns (outputs, inputs, params)."""
    b, vals = new(**specs)
    out = build(b, *vals)
    b.graph.outputs = list(out) if isinstance(out, tuple) else [out]
    xs = inputs if inputs is not None else [rand_input(v.type, sizes) for v in vals]
    params = make_params(b.graph)
    got = run(b.graph, xs, sizes, params, training=training)
    want = ref(*xs, P=params)
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    assert len(got) == len(want), f"{len(got)} outputs, reference has {len(want)}"
    for g_, w_ in zip(got, want):
        close(g_, w_, tol)
    return got, xs, params


def check_grad(specs: dict[str, str], build, ref, sizes: dict[str, int], tol: float = 1e-10,
               inputs: Optional[list] = None) -> None:
    """``check`` plus gradients: the outputs, then the gradient of ``sum(out * w)`` (w random) with
    respect to every floating-point input and parameter, each against the reference's."""
    b, vals = new(**specs)
    out = build(b, *vals)
    b.graph.outputs = list(out) if isinstance(out, tuple) else [out]
    xs = inputs if inputs is not None else [rand_input(v.type, sizes) for v in vals]
    params = make_params(b.graph)

    def leaves(ts):
        return [t.detach().clone().requires_grad_(t.dtype.is_floating_point) for t in ts]

    gx, rx = leaves(xs), leaves(xs)
    names = list(params)
    gp = dict(zip(names, leaves(params.values())))
    rp = dict(zip(names, leaves(params.values())))
    got = run(b.graph, gx, sizes, gp)
    want = ref(*rx, P=rp)
    want = list(want) if isinstance(want, (tuple, list)) else [want]
    assert len(got) == len(want), f"{len(got)} outputs, reference has {len(want)}"
    weights = []
    for g_, w_ in zip(got, want):
        close(g_, w_, tol)
        weights.append(torch.randn(w_.shape, dtype=w_.dtype) if w_.dtype.is_floating_point else None)
    flt = [(g_, w_, c) for g_, w_, c in zip(got, want, weights) if c is not None]
    assert flt, "no floating-point output to differentiate"
    sum((g_ * c).sum() for g_, _, c in flt).backward()
    sum((w_ * c).sum() for _, w_, c in flt).backward()
    pairs = [(f"input {i}", a, r) for i, (a, r) in enumerate(zip(gx, rx))] + \
        [(f"param {n}", gp[n], rp[n]) for n in names]
    checked = 0
    for what, a, r in pairs:
        if not a.requires_grad:
            continue
        assert (a.grad is None) == (r.grad is None), f"{what}: gradient present in one run only"
        if r.grad is not None:
            try:
                close(a.grad, r.grad, tol)
            except AssertionError as err:
                raise AssertionError(f"gradient of {what}: {err}") from None
            checked += 1
    assert checked, "no gradient was compared"
