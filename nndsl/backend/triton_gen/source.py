"""Kernel IR -> Triton source: one ``@triton.jit`` function per kernel spec.

The kernel walks the iteration space viewed as ``[R, C]``. Every input arrives as a strided view of
that space (a broadcast axis is a stride-0 axis): its row offset is computed from the row index
decomposed over the leading sizes ``L0..``, its column offset is ``col * stride``. Outputs are
contiguous. Sizes and strides are run-time arguments (Triton specializes the ones equal to 1), so
one compiled kernel serves every batch size.

Two shapes of kernel:

* **pointwise** (no reduction): a 2-D grid of ``[BLOCK_R, BLOCK_C]`` tiles, straight-line code.
* **row** (reductions over the last axis): ``BLOCK_R`` rows per program. With ``ONE_PASS`` (the
  whole row fits one tile) the code is straight-line and every value stays in registers; else
  each level of reductions is one loop over the row (accumulating in a tile, reduced once at the
  end), row values are computed between the loops, and a last loop computes and stores the full
  outputs. Full values are recomputed in each loop that needs them, never kept in memory.

Values are computed in float32 (float64 when the kernel's inputs are float64); loads convert on
the way in, stores round to the output's dtype on the way out. Dropout draws the same bits as every
other nndsl kernel (``kernels.dropout.dropout_keep``: element ``(r, c)`` of the ``[R, C]`` view),
behind the ``DROPOUT`` constexpr, which is off outside training.

The source holds generated names, numbers and fixed Triton spellings only — never text from an
input; ``check_source`` verifies that with ``ast`` before anything is written or imported.
"""
from __future__ import annotations

import ast
import re
from typing import Callable

from .kir import REDUCTIONS, KernelSpec, KNode, is_bool

_TL_DTYPE = {"f32": "tl.float32", "f64": "tl.float64", "f16": "tl.float16", "bf16": "tl.bfloat16"}
_WIDTH = {"bool": 0, "f16": 1, "bf16": 1, "f32": 2, "f64": 3}


def _num(v: float) -> str:
    return repr(float(v))


# primitive -> its Triton expression from the operand expressions (and the node, for its arg)
EXPR: dict[str, Callable] = {
    "add": lambda n, a, b: f"({a} + {b})",
    "sub": lambda n, a, b: f"({a} - {b})",
    "mul": lambda n, a, b: f"({a} * {b})",
    "div": lambda n, a, b: f"({a} / {b})",
    "neg": lambda n, a: f"(-{a})",
    "maximum": lambda n, a, b: f"tl.maximum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "minimum": lambda n, a, b: f"tl.minimum({a}, {b}, propagate_nan=tl.PropagateNan.ALL)",
    "pow": lambda n, a, b: f"gen_pow({a}, {b})",
    "exp": lambda n, a: f"tl.exp({a})",
    "log": lambda n, a: f"tl.log({a})",
    "sqrt": lambda n, a: f"tl.sqrt({a})",
    "rsqrt": lambda n, a: f"tl.rsqrt({a})",
    "sigmoid": lambda n, a: f"(1.0 / (1.0 + tl.exp(-{a})))",
    "tanh": lambda n, a: f"gen_tanh({a})",
    "erf": lambda n, a: f"tl.erf({a})",
    "abs": lambda n, a: f"tl.abs({a})",
    "sign": lambda n, a: f"tl.where({a} > 0.0, 1.0, tl.where({a} < 0.0, -1.0, 0.0))",
    "sin": lambda n, a: f"tl.sin({a})",
    "cos": lambda n, a: f"tl.cos({a})",
    "gt": lambda n, a, b: f"({a} > {b})",
    "ge": lambda n, a, b: f"({a} >= {b})",
    "lt": lambda n, a, b: f"({a} < {b})",
    "le": lambda n, a, b: f"({a} <= {b})",
    "eq": lambda n, a, b: f"({a} == {b})",
    "ne": lambda n, a, b: f"({a} != {b})",
    "where": lambda n, c, a, b: f"tl.where({c}, {a}, {b})",
}


def _powc(n: KNode, a: str) -> str:
    e = float(n.arg)
    small = {0.0: None, 1.0: a, 2.0: f"({a} * {a})", 3.0: f"({a} * {a} * {a})", 4.0: f"(({a} * {a}) * ({a} * {a}))",
             0.5: f"tl.sqrt({a})", -0.5: f"tl.rsqrt({a})", -1.0: f"(1.0 / {a})", -2.0: f"(1.0 / ({a} * {a}))"}
    if e == 0.0:
        return f"({a} * 0.0 + 1.0)"
    return small.get(e) or f"gen_pow({a}, {a} * 0.0 + {_num(e)})"


def _cast(n: KNode, a: str, compute: str) -> str:
    to = n.arg
    if _WIDTH[to] >= _WIDTH[compute]:
        return a
    return f"{a}.to({_TL_DTYPE[to]}).to({_TL_DTYPE[compute]})"


class _Body:
    """Emits statements for one scope (a loop body or the top level), naming values ``t<i>``."""

    def __init__(self, w: "_Writer", indent: int, full_ok: bool, memo: dict):
        self.w, self.ind, self.full_ok, self.memo = w, indent, full_ok, memo

    def line(self, s: str) -> None:
        self.w.lines.append("    " * self.ind + s)

    def val(self, n: KNode) -> str:
        if id(n) in self.memo:
            return self.memo[id(n)]
        if not n.row and not self.full_ok:
            raise AssertionError(f"full value {n} needed outside a tile")
        if n.op == "const":
            return _num(n.arg)
        if n.op == "scalar":
            return f"sc{n.arg}"
        if n.op == "ncols":
            return "C"
        if n.op in REDUCTIONS:
            return self._reduce_in_tile(n)
        name = f"t{self.w.index[id(n)]}"
        if n.op == "load":
            self.line(f"{name} = {self.w.load(n)}")
        elif n.op == "dropout":
            self.line(f"{name} = d{n.arg}")
        else:
            args = [self.val(a) for a in n.args]
            if n.op == "powc":
                e = _powc(n, args[0])
            elif n.op == "cast" and is_bool(n.args[0], self.w.spec):
                e = f"{args[0]}.to({self.w.ct})"
            elif n.op == "cast":
                e = _cast(n, args[0], self.w.compute)
            else:
                e = EXPR[n.op](n, *args)
            self.line(f"{name} = {e}")
        self.memo[id(n)] = name
        return name

    def _reduce_in_tile(self, n: KNode) -> str:
        """A reduction whose whole row is in this tile (pointwise and ONE_PASS kernels)."""
        name = f"t{self.w.index[id(n)]}"
        a = self.val(n.args[0])
        if n.args[0].row:  # a row value repeated C times
            self.line(f"{name} = {a} * C" if n.op == "rsum" else f"{name} = {a}")
        elif n.op == "rsum":
            self.line(f"{name} = tl.sum(tl.where(mask, {a}, 0.0), axis=1)[:, None]")
        else:
            self.line(f"{name} = tl.max(tl.where(mask, {a}, -float(\"inf\")), axis=1)[:, None]")
        self.memo[id(n)] = name
        return name


class _Writer:
    def __init__(self, spec: KernelSpec, nlead: int, compute: str):
        self.spec, self.nlead, self.compute = spec, nlead, compute
        self.nodes = spec.nodes()
        self.index = {id(n): i for i, n in enumerate(self.nodes)}
        self.lines: list[str] = []
        self.ct = _TL_DTYPE[compute]

    def load(self, n: KNode) -> str:
        i = n.arg
        conv = " != 0)" if self.spec.inputs[i].dtype == "bool" else f".to({self.ct}))"
        if n.row:
            return f"(tl.load(in{i} + base{i}[:, None], mask=rmask[:, None], other=0){conv}"
        return f"(tl.load(in{i} + base{i}[:, None] + (cols64 * s{i}_c)[None, :], mask=mask, other=0){conv}"

    # -- pieces ---------------------------------------------------------------------------------
    def signature(self) -> list[str]:
        s = self.spec
        args = [f"in{i}" for i in range(len(s.inputs))] + [f"out{k}" for k in range(len(s.outputs))]
        args += ["R", "C"] + [f"L{j}" for j in range(self.nlead)]
        for i in range(len(s.inputs)):
            args += [f"s{i}_{j}" for j in range(self.nlead)] + [f"s{i}_c"]
        args += [f"sc{k}" for k in range(s.n_scalars)]
        for k in range(len(s.dropouts)):
            args += [f"seed{k}", f"thr{k}", f"dsc{k}"]
        args += ["BLOCK_R: tl.constexpr", "BLOCK_C: tl.constexpr", "DROPOUT: tl.constexpr"]
        if s.has_reduction:
            args.append("ONE_PASS: tl.constexpr")
        return args

    def rows_prologue(self, ind: int) -> None:
        p = "    " * ind
        self.lines.append(f"{p}row0 = tl.program_id(0) * BLOCK_R")
        self.lines.append(f"{p}rows = row0 + tl.arange(0, BLOCK_R)")
        self.lines.append(f"{p}rmask = rows < R")
        self.lines.append(f"{p}r = rows.to(tl.int64)")
        if self.nlead:
            self.lines.append(f"{p}rest = r")
            for j in reversed(range(self.nlead)):
                if j == 0:
                    self.lines.append(f"{p}i0 = rest")
                else:
                    self.lines.append(f"{p}i{j} = rest % L{j}")
                    self.lines.append(f"{p}rest = rest // L{j}")
        for i in range(len(self.spec.inputs)):
            terms = " + ".join(f"i{j} * s{i}_{j}" for j in range(self.nlead)) or "r * 0"
            self.lines.append(f"{p}base{i} = {terms}")

    def tile(self, ind: int, col0: str) -> None:
        p = "    " * ind
        self.lines.append(f"{p}cols = {col0} + tl.arange(0, BLOCK_C)")
        self.lines.append(f"{p}cols64 = cols.to(tl.int64)")
        self.lines.append(f"{p}mask = rmask[:, None] & (cols < C)[None, :]")
        for k in range(len(self.spec.dropouts)):
            self.lines.append(f"{p}if DROPOUT:")
            # col0 as a tensor (dropout_keep converts it; a loop counter or 0 may be a plain int)
            self.lines.append(f"{p}    d{k} = tl.where(dropout_keep(seed{k}, row0, {col0} + row0 * 0, thr{k}, BLOCK_R, "
                              f"BLOCK_C), dsc{k}, 0.0)")
            self.lines.append(f"{p}else:")
            self.lines.append(f"{p}    d{k} = 1.0")

    def store(self, body: _Body, k: int, full: bool) -> None:
        o = self.spec.outputs[k]
        v = body.val(o.node)
        if full:
            if o.node.row:
                v = f"(tl.zeros([BLOCK_R, BLOCK_C], {self.ct}) + {v})"
            body.line(f"tl.store(out{k} + (r * C)[:, None] + cols64[None, :], {v}.to(out{k}.dtype.element_ty), "
                      f"mask=mask)")
        else:
            if o.node.op in ("const", "scalar", "ncols"):
                v = f"(tl.zeros([BLOCK_R, 1], {self.ct}) + {v})"
            body.line(f"tl.store(out{k} + r[:, None], {v}.to(out{k}.dtype.element_ty), mask=rmask[:, None])")

    # -- kernels --------------------------------------------------------------------------------
    def straight(self, ind: int, col0: str) -> None:
        """Everything in one tile: pointwise kernels, and row kernels whose row fits (ONE_PASS)."""
        self.tile(ind, col0)
        body = _Body(self, ind, True, {})
        for k in range(len(self.spec.outputs)):
            self.store(body, k, not _row_output(self.spec, k))

    def looped(self, ind: int) -> None:
        """One loop per level of reductions, row values between loops, a last loop for outputs."""
        spec = self.spec
        level = _levels(self.nodes)
        top = _Body(self, ind, False, {})
        done_rows: set[int] = set()

        def emit_rows(upto: int) -> None:
            for n in self.nodes:
                if n.row and level[id(n)] <= upto and id(n) not in done_rows and n.op not in REDUCTIONS:
                    top.val(n)
                    done_rows.add(id(n))

        emit_rows(0)
        depth = max((level[id(n)] for n in self.nodes if n.op in REDUCTIONS), default=0)
        for lv in range(1, depth + 1):
            reds = [n for n in self.nodes if n.op in REDUCTIONS and level[id(n)] == lv]
            for n in reds:
                init = "tl.zeros" if n.op == "rsum" else "-float(\"inf\") + tl.zeros"
                top.line(f"acc{self.index[id(n)]} = {init}([BLOCK_R, BLOCK_C], {self.ct})")
            top.line("for c0 in range(0, C, BLOCK_C):")
            self.tile(ind + 1, "c0")
            body = _Body(self, ind + 1, True, dict(top.memo))
            for n in reds:
                a, acc = body.val(n.args[0]), f"acc{self.index[id(n)]}"
                if n.op == "rsum":
                    body.line(f"{acc} += tl.where(mask, {a}, 0.0)")
                else:
                    body.line(f"{acc} = tl.maximum({acc}, tl.where(mask, {a}, -float(\"inf\")))")
            for n in reds:
                i = self.index[id(n)]
                fn = "tl.sum" if n.op == "rsum" else "tl.max"
                top.line(f"t{i} = {fn}(acc{i}, axis=1)[:, None]")
                top.memo[id(n)] = f"t{i}"
                done_rows.add(id(n))
            emit_rows(lv)
        rows_out = [k for k in range(len(spec.outputs)) if _row_output(spec, k)]
        full_out = [k for k in range(len(spec.outputs)) if not _row_output(spec, k)]
        if full_out:
            top.line("for c0 in range(0, C, BLOCK_C):")
            self.tile(ind + 1, "c0")
            body = _Body(self, ind + 1, True, dict(top.memo))
            for k in full_out:
                self.store(body, k, True)
        for k in rows_out:
            self.store(top, k, False)

    def kernel(self, fn_name: str) -> str:
        spec = self.spec
        random = [f"{a}{k}" for k in range(len(spec.dropouts)) for a in ("seed", "thr")]
        # a seed is a fresh number each step: never specialize on its value (no recompiles)
        self.lines = [f"@triton.jit(do_not_specialize={random!r})" if random else "@triton.jit", f"def {fn_name}("]
        self.lines += [f"    {a}," for a in self.signature()]
        self.lines.append("):")
        if not spec.has_reduction:
            self.rows_prologue(1)
            self.straight(1, "tl.program_id(1) * BLOCK_C")
        else:
            self.rows_prologue(1)
            self.lines.append("    if ONE_PASS:")
            self.straight(2, "0")
            self.lines.append("    else:")
            self.looped(2)
        return "\n".join(self.lines)


def _row_output(spec: KernelSpec, k: int) -> bool:
    """Output k is stored once per row (a row-shaped result), not per element."""
    return not spec.outputs[k].full


def _levels(nodes: list[KNode]) -> dict[int, int]:
    """How many reductions deep each node is (0: computable from loads, constants and scalars)."""
    lv: dict[int, int] = {}
    for n in nodes:
        base = max((lv[id(a)] for a in n.args), default=0)
        lv[id(n)] = base + 1 if n.op in REDUCTIONS else base
    return lv


PRELUDE = '''\
import triton
import triton.language as tl
from nndsl.backend.triton_gen.prelude import gen_pow, gen_tanh
from nndsl.kernels.dropout import dropout_keep
'''


def module_source(spec: KernelSpec, fn_name: str, nlead: int, compute: str) -> str:
    """The whole generated module: imports and the kernel function (``nlead`` leading axes,
    computing in ``compute``: f32 or f64)."""
    src = PRELUDE + "\n\n" + _Writer(spec, nlead, compute).kernel(fn_name) + "\n"
    check_source(src, fn_name)
    return src


# ------------------------------------------------------------------------------------------ safety
_NAME = re.compile(r"^(in|out|s|sc|seed|thr|dsc|d|t|acc|base|L|i)\d+(_\d+|_c)?$")
_FIXED = {"tl", "triton", "dropout_keep", "gen_pow", "gen_tanh", "R", "C", "BLOCK_R", "BLOCK_C", "DROPOUT",
          "ONE_PASS", "row0", "rows", "rmask", "r", "rest", "cols", "cols64", "mask", "c0", "range", "float"}


class UnsafeSource(Exception):
    pass


def check_source(src: str, fn_name: str) -> None:
    """Refuse generated source holding anything but generated names, numbers and Triton calls."""
    tree = ast.parse(src)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not (node.id in _FIXED or _NAME.match(node.id) or node.id == fn_name):
            raise UnsafeSource(f"unexpected name {node.id!r} in generated kernel source")
        if isinstance(node, ast.Constant) and not (
                isinstance(node.value, (int, float, bool)) or node.value is None or node.value == "inf"
                or (isinstance(node.value, str) and re.match(r"^(seed|thr)\d+$", node.value))):
            raise UnsafeSource(f"unexpected constant {node.value!r} in generated kernel source")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise UnsafeSource(f"unexpected attribute {node.attr!r} in generated kernel source")
        if isinstance(node, (ast.Lambda, ast.Global, ast.Nonlocal, ast.Delete, ast.With, ast.Try,
                             ast.ClassDef, ast.AsyncFunctionDef, ast.Await, ast.Yield)):
            raise UnsafeSource(f"unexpected {type(node).__name__} in generated kernel source")
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            mod = getattr(node, "module", None)
            ok = (mod is None and names in (["triton"], ["triton.language"])) or \
                 (mod == "nndsl.backend.triton_gen.prelude" and set(names) <= {"gen_pow", "gen_tanh"}) or \
                 (mod == "nndsl.kernels.dropout" and names == ["dropout_keep"])
            if not ok:
                raise UnsafeSource(f"unexpected import in generated kernel source")
    if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", fn_name):
        raise UnsafeSource(f"bad kernel name {fn_name!r}")
