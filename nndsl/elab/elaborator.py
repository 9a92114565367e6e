"""The elaborator proper: statements and expressions of a block or model body -> IR nodes.

An environment (``env``) maps names to values: IR ``Value``s (tensors) and compile-time values
(see ``scalar``). Tensor arithmetic becomes IR ops (``add``, ``mul_s``, ``matmul``...), calls go
to blocks of the file first, then to builtins, then to the compile-time scalar functions.

Instance naming (state_dict keys) follows ``naming``: a stateful call opens a child scope, a
``repeat`` unrolls in numbered scopes, and a repeat body's single stateful call IS the scope.
"""
from __future__ import annotations

import re
from typing import Any, Optional

import sympy

from .. import limits
from ..errors import NndslError, NndslLimitError, NndslNameError, NndslSyntaxError, NndslTypeError, Span, did_you_mean
from ..frontend import ast
from ..ir.builder import Builder
from ..ir.graph import Value
from .. import layers
from ..ops import registry as ops
from . import scalar as S
from .calls import DIM_KINDS, Signature, bind, convert
from .naming import callee_name, single_stateful_call, snake_case
from .shapes import Matcher, type_text

TENSOR_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "**": "pow", "@": "matmul"}
TENSOR_SCALAR_OPS = {"+": "add_s", "-": "sub_s", "*": "mul_s", "/": "div_s", "**": "pow_s"}
SCALAR_TENSOR_OPS = {"+": "add_s", "*": "mul_s", "-": "rsub_s", "/": "rdiv_s"}  # s op x


class Elaborator:
    def __init__(self, program: ast.Program, builder: Builder):
        self.program = program
        self.b = builder
        self.blocks = program.blocks()
        self._stack: list[str] = []  # blocks being elaborated (to refuse recursion)
        self._instance_call: Optional[ast.Call] = None  # the single stateful call of a repeat body
        self.steps = limits.StepCounter()  # statements run so far (repeats and block calls unroll)

    # ============================================================================ statements
    def run_body(self, body: list, env: dict, *, in_repeat: bool = False) -> Optional[tuple[list, ast.Return]]:
        """Run statements; returns (values, the return statement) or None when there is no return."""
        for i, stmt in enumerate(body):
            self.steps.step(getattr(stmt, "span", None))
            if isinstance(stmt, ast.Assign):
                self.assign(stmt, env)
            elif isinstance(stmt, ast.Repeat):
                self.repeat(stmt, env)
            elif isinstance(stmt, ast.Return):
                if in_repeat:
                    raise NndslSyntaxError("return is not allowed inside repeat", stmt.span)
                if i != len(body) - 1:
                    raise NndslSyntaxError("statements after return are never run", body[i + 1].span)
                values = [self.expr(v, env) for v in stmt.values]
                if len(values) == 1 and isinstance(values[0], tuple):  # `return split(x, 2)`: two values
                    values = list(values[0])
                return values, stmt
            else:
                raise NndslSyntaxError(f"unknown statement {type(stmt).__name__}", getattr(stmt, "span", None))
        return None

    def assign(self, stmt: ast.Assign, env: dict) -> None:
        value = self.expr(stmt.value, env)
        if len(stmt.targets) == 1:
            self._bind(stmt.targets[0].id, value, env)
            return
        n = len(stmt.targets)
        if not isinstance(value, (tuple, list)):
            raise NndslTypeError(f"cannot unpack {S.describe(value)} into {n} names", stmt.value.span,
                                 "only calls that return several values (split, lstm...) can be unpacked")
        if len(value) != n:
            raise NndslTypeError(f"cannot unpack {len(value)} values into {n} names", stmt.span)
        for t, v in zip(stmt.targets, value):
            self._bind(t.id, v, env)

    @staticmethod
    def _bind(name: str, value: Any, env: dict) -> None:
        if isinstance(value, Value) and value.name is None:
            value.name = name
        env[name] = value

    def repeat(self, stmt: ast.Repeat, env: dict) -> None:
        with self.b.at(stmt.count.span):
            n = self.expr(stmt.count, env, dim=True)
            if isinstance(n, sympy.Expr):
                n = S.to_dim(n, stmt.count.span)
            if not isinstance(n, int) or isinstance(n, bool):
                raise NndslTypeError(f"repeat needs a fixed int count, got {S.describe(n)}", stmt.count.span)
            if n < 0:
                raise NndslTypeError(f"repeat count must be >= 0, got {n}", stmt.count.span)
            if n > limits.MAX_REPEAT:
                raise NndslLimitError(f"repeat count {n} is too large; the limit is {limits.MAX_REPEAT:,}",
                                      stmt.count.span)
        with self.b.at(stmt.span):
            scope = self.b.claim_name(stmt.name) if stmt.name else self.b.unique_name("repeat")
        single = single_stateful_call(stmt.body, self._is_stateful)
        outer = self._instance_call
        with self.b.child(scope):
            for i in range(n):
                with self.b.child(str(i)):
                    self._instance_call = single
                    try:
                        self.run_body(stmt.body, env, in_repeat=True)
                    finally:
                        self._instance_call = outer

    def _is_stateful(self, name: str) -> bool:
        bi = None if name in self.blocks else layers.get(name)
        return name in self.blocks or (bi is not None and bi.stateful)

    # ============================================================================ expressions
    def expr(self, e: Any, env: dict, dim: bool = False) -> Any:
        """Evaluate an expression: a tensor Value, a compile-time value, or a list/tuple of them.

        An error raised without a span below (a type or a limit check deep in the IR) is located
        at the innermost expression being evaluated."""
        try:
            return self._expr(e, env, dim)
        except NndslError as err:
            if err.span is None:
                err.span = getattr(e, "span", None)
            raise

    def _expr(self, e: Any, env: dict, dim: bool = False) -> Any:
        if isinstance(e, (ast.Num, ast.Str, ast.Bool)):
            return e.value
        if isinstance(e, ast.Name):
            return S.lookup(e.id, env, e.span)
        if isinstance(e, ast.BinOp):
            a = self.expr(e.left, env, dim)
            b = self.expr(e.right, env, dim)
            if isinstance(a, Value) or isinstance(b, Value):
                return self.tensor_binop(e.op, a, b, e.span)
            return S.binop(e.op, a, b, e.span, dim)
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand, env, dim)
            if isinstance(v, Value):
                if e.op == "+":
                    return v
                with self.b.at(e.span):
                    return self.b.op("neg", [v])
            return S.unary(e.op, v, e.span)
        if isinstance(e, ast.Call):
            return self.call(e, env, dim)
        if isinstance(e, ast.Subscript):
            return self.subscript(e, env)
        if isinstance(e, ast.ListExpr):
            return [self.expr(x, env, dim) for x in e.items]
        if isinstance(e, ast.TupleExpr):
            return tuple(self.expr(x, env, dim) for x in e.items)
        if isinstance(e, ast.Attribute):
            return self.parameter_path(e, env)
        raise NndslSyntaxError(f"unexpected {type(e).__name__} in an expression", getattr(e, "span", None))

    def parameter_path(self, e: ast.Attribute, env: dict) -> Value:
        """``wte.weight``: the parameter a layer named ``wte`` declared earlier (weight tying), read
        as a tensor; looked up from the current block instance outwards."""
        from ..layers.tying import find_param

        parts, root = [e.attr], e.value
        while isinstance(root, ast.Attribute):
            parts.insert(0, root.attr)
            root = root.value
        if not isinstance(root, ast.Name) or root.id in env:
            raise NndslSyntaxError(f"'{S.unparse(e)}': only a parameter path such as wte.weight can be read as an "
                                   f"attribute; on a value, call a method ({S.unparse(e)}(...))", e.span)
        with self.b.at(e.span):
            return find_param(self.b, S.unparse(e), ".".join([root.id, *parts]), own_scope=True)

    def tensor_binop(self, op: str, a: Any, b: Any, span: Optional[Span]) -> Value:
        with self.b.at(span):
            if isinstance(a, Value) and isinstance(b, Value):
                if op not in TENSOR_OPS:
                    raise NndslTypeError(f"'{op}' is not defined on tensors", span)
                return self.b.op(TENSOR_OPS[op], [a, b])
            x, s, table = (a, b, TENSOR_SCALAR_OPS) if isinstance(a, Value) else (b, a, SCALAR_TENSOR_OPS)
            if op not in table:
                hint = "use matmul between two tensors" if op == "@" else None
                raise NndslTypeError(f"'{op}' between {S.describe(a)} and {S.describe(b)} is not supported",
                                     span, hint)
            if not S.is_number(s):
                raise NndslTypeError(f"cannot apply '{op}' to {S.describe(a)} and {S.describe(b)}", span)
            if isinstance(s, sympy.Expr):
                s = S.to_dim(s, span) if s.is_integer else s
            return self.b.op(table[op], [x], {"value": s})

    def subscript(self, e: ast.Subscript, env: dict) -> Any:
        base = self.expr(e.value, env)
        if not isinstance(base, Value):
            if len(e.index) != 1 or isinstance(e.index[0], (ast.Slice, ast.EllipsisLit)):
                raise NndslTypeError(f"cannot slice {S.describe(base)}", e.span)
            return S.index_list(base, self.expr(e.index[0], env, dim=True), e.index[0].span)
        items: list = []
        for it in e.index:
            if isinstance(it, ast.EllipsisLit):
                items.append("...")
            elif isinstance(it, ast.Slice):
                items.append(("slice",) + tuple(self._index_dim(p, env) for p in (it.lower, it.upper, it.step)))
            else:
                items.append(self._index_dim(it, env))
        with self.b.at(e.span):
            return self.b.op("getitem", [base], {"index": tuple(items)})

    def _index_dim(self, e: Any, env: dict) -> Any:
        if e is None:
            return None
        v = self.expr(e, env, dim=True)
        if v is None:
            return None
        if isinstance(v, Value):
            raise NndslTypeError("indexing with a tensor is not supported here", e.span,
                                 "an index must be an int, a dim, a slice, None or ...")
        return S.to_dim(v, e.span, "an index (an int or a dim)")

    # ============================================================================ calls
    def call(self, e: ast.Call, env: dict, dim: bool = False) -> Any:
        name = callee_name(e)
        if name is None:
            raise NndslSyntaxError(f"'{S.unparse(e.func)}' cannot be called", e.func.span)
        args = ([e.func.value] if isinstance(e.func, ast.Attribute) else []) + list(e.args)
        if name in self.blocks:
            return self.call_block(self.blocks[name], args, e, env)
        bi = layers.get(name)
        if name in S.SCALAR_FUNCS and (bi is None or all(self.is_scalar_expr(a, env) for a in args)):
            if e.kwargs:
                raise NndslTypeError(f"{name} takes no keyword arguments", e.kwargs[0].span)
            return S.call_func(name, [self.expr(a, env, dim) for a in args], e.span)
        if bi is not None:
            return self.call_builtin(bi, args, e, env)
        span = e.func.span
        cands = list(self.blocks) + list(layers.load_all()) + list(S.SCALAR_FUNCS)
        raise NndslNameError(f"unknown function '{name}'", span, did_you_mean(name, cands))

    def is_scalar_expr(self, e: Any, env: dict) -> bool:
        """True when ``e`` cannot produce a tensor (so sqrt/exp/... evaluate at compile time)."""
        if isinstance(e, ast.Name):
            v = env.get(e.id)
            return not (isinstance(v, Value) or (isinstance(v, (list, tuple)) and any(isinstance(x, Value)
                                                                                        for x in v)))
        if isinstance(e, ast.BinOp):
            return self.is_scalar_expr(e.left, env) and self.is_scalar_expr(e.right, env)
        if isinstance(e, ast.UnaryOp):
            return self.is_scalar_expr(e.operand, env)
        if isinstance(e, (ast.ListExpr, ast.TupleExpr)):
            return all(self.is_scalar_expr(x, env) for x in e.items)
        if isinstance(e, ast.Subscript):
            return self.is_scalar_expr(e.value, env)
        if isinstance(e, ast.Call):
            return (isinstance(e.func, ast.Name) and e.func.id in S.SCALAR_FUNCS and e.func.id not in self.blocks
                    and all(self.is_scalar_expr(a, env) for a in e.args))
        return isinstance(e, (ast.Num, ast.Str, ast.Bool))

    def _instance(self, call: ast.Call, name_expr: Optional[ast.Keyword], base: str, env: dict) -> Optional[str]:
        """The child scope a stateful call opens (None: the call IS the current repeat scope)."""
        if call is self._instance_call:
            return None
        if name_expr is None:
            return self.b.unique_name(base)
        nm = self.expr(name_expr.value, env)
        with self.b.at(name_expr.value.span):
            if not isinstance(nm, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", nm):
                raise NndslTypeError(f"name= must be an identifier string, got {S.describe(nm)}",
                                     name_expr.value.span, "e.g. name=\"attn\"")
            return self.b.claim_name(nm)

    def call_builtin(self, bi: layers.Builtin, args: list, call: ast.Call, env: dict) -> Any:
        sig = Signature(bi.name, [a.name for a in bi.args], [a.kind for a in bi.args],
                        [a.required for a in bi.args], bi.variadic, [a.optional for a in bi.args])
        takes_name = bi.stateful and "name" not in sig.names
        kwargs, name_kw = self._split_name(call, takes_name)
        values: dict[str, Any] = {}
        for pname, ex in bind(sig, args, kwargs, call.span, ("name",) if takes_name else ()):
            kind = sig.kind(pname)
            where = f"{bi.name}'s argument '{pname}'"
            if isinstance(ex, list):  # the variadic parameter's extra positionals
                vals = [self.expr(x, env) for x in ex]
                for x, v in zip(ex, vals):
                    convert("tensor" if kind == "tensors" else kind, v, where, x.span)
                values[pname] = vals
            else:
                opt = sig.optional[sig.names.index(pname)]
                values[pname] = convert(kind, self.expr(ex, env, kind in DIM_KINDS), where, ex.span, opt)
        for a in bi.args:
            if a.name not in values:
                values[a.name] = None if a.optional else ([] if a.name == bi.variadic and a.required
                                                          else _copy(a.default))
        with self.b.at(call.span):
            inst = self._instance(call, name_kw, snake_case(bi.name), env) if bi.stateful else None
            args_in_order = [values[a.name] for a in bi.args]  # positional: fn(b, x, out, bias)
            try:
                if inst is None:
                    out = bi.fn(self.b, *args_in_order)
                else:
                    with self.b.child(inst):
                        out = bi.fn(self.b, *args_in_order)
            except ops.InferError as err:
                raise err.kind(err.message, self.b.span, err.hint) from None
        return tuple(out) if isinstance(out, list) else out

    def _split_name(self, call: ast.Call, takes_name: bool) -> tuple[list[ast.Keyword], Optional[ast.Keyword]]:
        """Separate the ``name=`` keyword (an instance name) from the call's other keywords."""
        rest = [k for k in call.kwargs if k.name != "name"]
        named = [k for k in call.kwargs if k.name == "name"]
        if named and not takes_name:
            raise NndslTypeError(f"{callee_name(call)} owns no parameters, so name= does not apply",
                                 named[0].span)
        return rest, (named[0] if named else None)

    def call_block(self, defn: ast.Definition, args: list, call: ast.Call, env: dict) -> Any:
        if defn.name in self._stack:
            raise NndslTypeError(f"block {defn.name} calls itself (through {' -> '.join(self._stack)})", call.span)
        sig = Signature(defn.name, [p.name for p in defn.params],
                        ["tensor" if isinstance(p.type, ast.TensorTypeExpr) else p.type.name for p in defn.params],
                        [p.default is None for p in defn.params])
        kwargs, name_kw = self._split_name(call, takes_name=True)
        params = {p.name: p for p in defn.params}
        scalars = {p.name for p in defn.params if not isinstance(p.type, ast.TensorTypeExpr)}
        given: dict[str, tuple[Any, Any]] = {}  # name -> (value, argument expression)
        for pname, ex in bind(sig, args, kwargs, call.span, ("name",)):
            kind = sig.kind(pname)
            v = self.expr(ex, env, kind == "int")
            where = f"{defn.name}'s argument '{pname}'"
            given[pname] = (convert("dim" if kind == "int" else kind, v, where, ex.span), ex)
        with self.b.at(call.span):
            inst = self._instance(call, name_kw, snake_case(defn.name), env)
        inner: dict[str, Any] = {n: v for n, (v, _) in given.items() if n in scalars}
        m = Matcher(inner, can_bind=lambda n: n not in scalars, owner=defn.name)
        for pname, (v, ex) in given.items():
            if pname not in scalars:
                m.match(f"{defn.name} expects {pname}: ", params[pname].type, v.type, ex.span, source=pname)
        for p in defn.params:  # defaults, evaluated in the block (they may use dims bound above)
            if p.name not in given:
                kind = sig.kind(p.name)
                v = S.eval_scalar(p.default, inner, dim=kind == "int")
                inner[p.name] = convert("dim" if kind == "int" else kind, v, f"the default of '{p.name}'",
                                        p.default.span)
        m.finish()
        for pname in given:
            if pname not in scalars:
                self._bind(pname, given[pname][0], inner)
        self._stack.append(defn.name)
        try:
            if inst is None:  # the instance is the enclosing repeat's scope (blocks.3)
                self.b.graph.scope_kinds.setdefault(self.b.scope, defn.name)
                result = self.run_body(defn.body, inner)
            else:
                with self.b.child(inst):
                    self.b.graph.scope_kinds[self.b.scope] = defn.name  # for summaries and --explain
                    result = self.run_body(defn.body, inner)
        finally:
            self._stack.pop()
        if result is None:
            raise NndslSyntaxError(f"block {defn.name} has no return statement", defn.span)
        values, ret = result
        self.check_returns(defn, values, ret, inner, can_bind=lambda n: True)
        return values[0] if len(values) == 1 else tuple(values)

    def check_returns(self, defn: ast.Definition, values: list, ret: ast.Return, env: dict, can_bind) -> None:
        """Check returned values against the declared return types (names bound in ``env``)."""
        if defn.returns is None:
            return
        if len(values) != len(defn.returns):
            raise NndslTypeError(f"{defn.name} returns {len(values)} value{'s' if len(values) != 1 else ''} "
                                 f"but declares {len(defn.returns)}", ret.span,
                                 "declared: " + ", ".join(type_text(t) for t in defn.returns))
        m = Matcher(dict(env), can_bind, owner="the model" if defn.kind == "model" else defn.name)
        exprs = ret.values if len(ret.values) == len(values) else ret.values[:1] * len(values)
        for i, (t, v, ex) in enumerate(zip(defn.returns, values, exprs)):
            what = (f"{defn.name} declares result {i + 1} as " if len(values) > 1
                    else f"{defn.name} declares it returns ")
            if isinstance(t, ast.TensorTypeExpr):
                if not isinstance(v, Value):
                    raise NndslTypeError(f"{what}{type_text(t)}, but returns {S.describe(v)}", ex.span)
                m.match(what, t, v.type, ex.span, source=f"result {i + 1}" if len(values) > 1 else "the result")
            else:
                convert(t.name, v, f"{defn.name}'s result", ex.span)
        m.finish()


def _copy(v: Any) -> Any:
    return list(v) if isinstance(v, list) else v

