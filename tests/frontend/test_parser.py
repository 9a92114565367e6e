"""The parser accepts the language and builds the right AST: node types, fields and spans."""
import re
from importlib import resources
from pathlib import Path

import pytest

from frontend.fe_helpers import CNN, GPT, sx
from nndsl.frontend import ast
from nndsl.frontend.parser import lark_parser, parse


def expr(text: str) -> ast.Expr:
    """The AST of one expression (parsed as the value of an assignment in a block)."""
    program = parse(f"block T() {{\n    y = {text}\n}}\n", "e.nn")
    return program.definitions[0].body[0].value


def body(text: str) -> list:
    return parse(f"block T() {{\n{text}\n}}\n", "b.nn").definitions[0].body


# ----------------------------------------------------------------------------- whole programs
def test_brief_gpt_parses_to_the_expected_definitions():
    p = parse(GPT, "gpt.nn")
    assert [(d.kind, d.name) for d in p.definitions] == [
        ("block", "CausalSelfAttention"), ("block", "HandAttention"), ("block", "MLP"),
        ("block", "Block"), ("model", "GPT")]
    assert set(p.blocks()) == {"CausalSelfAttention", "HandAttention", "MLP", "Block"}
    assert list(p.models()) == ["GPT"]
    gpt = p.models()["GPT"]
    assert [(q.name, sx(q.type), sx(q.default) if q.default else None) for q in gpt.params] == [
        ("idx", ("i64", "B", "T"), None), ("vocab", "int", 65), ("ctx", "int", 256), ("D", "int", 384),
        ("heads", "int", 6), ("L", "int", 6), ("dropout", "float", 0.2)]
    assert sx(gpt.returns) == [("f32", "B", "T", "vocab")]
    rep = gpt.body[2]
    assert isinstance(rep, ast.Repeat) and rep.name == "blocks" and sx(rep.count) == "L"
    assert sx(rep.body) == [("=", ["x"], ("call", "Block", ["x", "heads", "dropout"]))]
    assert (rep.span.line, rep.span.col, rep.span.end_line) == (27, 5, 29)
    assert p.file == "gpt.nn" and p.source == GPT


def test_brief_gpt_statements_keep_method_sugar_and_keywords():
    attn = parse(GPT).blocks()["CausalSelfAttention"]
    assert sx(attn.body[0]) == ("=", ["q", "k", "v"], (
        "call", "split", [("call", "linear", ["x", ("*", 3, "D")], {"name": ("str", "qkv")}), 3], {"dim": -1}))
    q = attn.body[1].value
    assert isinstance(q, ast.Call) and isinstance(q.func, ast.Attribute) and q.func.attr == "transpose"
    inner = q.func.value
    assert isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) and inner.func.attr == "reshape"
    assert sx(inner.args) == [("list", "B", "T", "heads", ("/", "D", "heads"))]
    assert sx(attn.body[-1]) == ("return", ("call", "dropout", [
        ("call", "linear", ["y", "D"], {"name": ("str", "proj")}), "dropout"]))
    hand = parse(GPT).blocks()["HandAttention"]
    assert sx(hand.body[0].value) == ("+", ("*", ("@", "q", ("call", (".", "k", "transpose"), [-2, -1])),
                                            ("/", 1.0, ("call", "sqrt", ["Dh"]))), ("call", "causal_mask", ["T"]))


def test_brief_gpt_train_section():
    (t,) = parse(GPT).trains
    assert t.model == "GPT"
    assert [e.key for e in t.entries] == ["data", "eval", "loss", "optimizer", "schedule", "steps", "batch",
                                          "clip", "metrics"]
    values = {e.key: sx(e.value) for e in t.entries}
    assert values["optimizer"] == ("call", "adamw", [], {"lr": 1e-3, "betas": ("list", 0.9, 0.99),
                                                         "weight_decay": 0.1})
    assert values["loss"] == "cross_entropy" and values["steps"] == 5000 and values["clip"] == 1.0
    assert values["metrics"] == ("list", "loss", "perplexity")
    assert t.entries[0].span.line == 33 and t.entries[0].span.col == 5


def test_cnn_with_semicolons_and_unnamed_train():
    p = parse(CNN)
    (m,) = p.definitions
    assert [sx(s)[0] for s in m.body] == ["=", "=", "=", "=", "=", "return"]
    assert sx(m.body[4].value) == ("call", (".", "x", "flatten"), [1])
    assert p.trains[0].model is None and [e.key for e in p.trains[0].entries] == [
        "data", "loss", "optimizer", "epochs"]


# ----------------------------------------------------------------------------- expressions
@pytest.mark.parametrize("text, tree", [
    ("a + b * c ** 2", ("+", "a", ("*", "b", ("**", "c", 2)))),
    ("-x ** 2", ("u-", ("**", "x", 2))),
    ("-2 ** 2", ("u-", ("**", 2, 2))),
    ("a @ b + c", ("+", ("@", "a", "b"), "c")),
    ("a + b @ c", ("+", "a", ("@", "b", "c"))),
    ("a - b - c", ("-", ("-", "a", "b"), "c")),
    ("a / b * c // d % e", ("%", ("//", ("*", ("/", "a", "b"), "c"), "d"), "e")),
    ("a ** b ** c", ("**", "a", ("**", "b", "c"))),
    ("2 ** -1", ("**", 2, -1)),
    ("a * -b", ("*", "a", ("u-", "b"))),
    ("--a", ("u-", ("u-", "a"))),
    ("+a", ("u+", "a")),
    ("(a + b) * c", ("*", ("+", "a", "b"), "c")),
    ("-(a + b)", ("u-", ("+", "a", "b"))),
    ("x.t() ** 2", ("**", ("call", (".", "x", "t"), []), 2)),
    ("-x[0]", ("u-", ("[]", "x", [0]))),
])
def test_precedence_and_associativity(text, tree):
    assert sx(expr(text)) == tree


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("42", 42), ("1_000", 1000), ("0.5", 0.5), (".5", 0.5), ("2.", 2.0), ("1e-3", 1e-3),
    ("1E3", 1000.0), ("2.5e+2", 250.0), ("-1", -1), ("-0.25", -0.25), ("+3", 3),
])
def test_numbers(text, value):
    node = expr(text)
    assert isinstance(node, ast.Num) and node.value == value and type(node.value) is type(value)


def test_signed_literal_is_folded_with_a_span_over_the_sign():
    node = expr("-17")
    assert node.value == -17 and (node.span.col, node.span.end_col) == (9, 12)


@pytest.mark.parametrize("text, value", [
    ('"abc"', "abc"), ("'abc'", "abc"), ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'),
    (r'"a\nb\t\\"', "a\nb\t\\"), (r'"C:\data"', r"C:\data"), ('""', ""), ('"# not a comment"', "# not a comment"),
])
def test_strings(text, value):
    node = expr(text)
    assert isinstance(node, ast.Str) and node.value == value


def test_booleans_none_and_names():
    assert isinstance(expr("true"), ast.Bool) and expr("true").value is True
    assert isinstance(expr("false"), ast.Bool) and expr("false").value is False
    none = expr("None")
    assert isinstance(none, ast.Name) and none.id == "None"
    assert sx(expr("_x1")) == "_x1" and sx(expr("trainer")) == "trainer"  # keyword prefixes are names


def test_lists_tuples_and_parentheses():
    assert sx(expr("[]")) == ("list",)
    assert sx(expr("[a, [1, 2], 'c',]")) == ("list", "a", ("list", 1, 2), ("str", "c"))
    assert sx(expr("()")) == ("tuple",)
    assert sx(expr("(a,)")) == ("tuple", "a")
    assert sx(expr("(a, b + 1)")) == ("tuple", "a", ("+", "b", 1))
    assert sx(expr("((a))")) == "a"
    assert isinstance(expr("(a)"), ast.Name)


def test_calls_positional_and_keyword_arguments():
    node = expr("conv2d(x, 32, kernel=3, padding=1,)")
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "conv2d"
    assert sx(node.args) == ["x", 32]
    assert [(k.name, sx(k.value)) for k in node.kwargs] == [("kernel", 3), ("padding", 1)]
    assert sx(expr("f()")) == ("call", "f", [])
    assert node.kwargs[0].span.col == 23 and node.kwargs[0].span.end_col == 31


def test_method_calls_chain_as_call_of_attribute():
    node = expr("x.reshape([B, T]).transpose(1, 2)")
    assert sx(node) == ("call", (".", ("call", (".", "x", "reshape"), [("list", "B", "T")]), "transpose"), [1, 2])
    assert isinstance(node.func, ast.Attribute) and node.func.span.col == 9
    assert sx(expr("linear(x, 3).relu()")) == ("call", (".", ("call", "linear", ["x", 3]), "relu"), [])
    assert sx(expr("x.f(dim=1)")) == ("call", (".", "x", "f"), [], {"dim": 1})


@pytest.mark.parametrize("text, index", [
    ("x[0]", [0]),
    ("x[:, -1]", [("slice", None, None, None), -1]),
    ("x[..., :D]", ["...", ("slice", None, "D", None)]),
    ("x[None]", ["None"]),
    ("x[:, None, 1:]", [("slice", None, None, None), "None", ("slice", 1, None, None)]),
    ("x[1:T - 1:2]", [("slice", 1, ("-", "T", 1), 2)]),
    ("x[::2]", [("slice", None, None, 2)]),
    ("x[::]", [("slice", None, None, None)]),
    ("x[a:b,]", [("slice", "a", "b", None)]),
])
def test_subscripts(text, index):
    node = expr(text)
    assert isinstance(node, ast.Subscript) and sx(node.value) == "x" and sx(node.index) == index


def test_subscript_node_types_and_chaining():
    node = expr("x[..., 0:2][0]")
    assert isinstance(node.value, ast.Subscript)
    ell, sl = node.value.index
    assert isinstance(ell, ast.EllipsisLit) and isinstance(sl, ast.Slice)
    assert (ell.span.col, ell.span.end_col) == (11, 14) and (sl.span.col, sl.span.end_col) == (16, 19)


# ----------------------------------------------------------------------------- statements
def test_assignment_and_tuple_unpacking():
    a, b = body("    x = 1\n    p, q, r = split(x, 3)")
    assert isinstance(a, ast.Assign) and [t.id for t in a.targets] == ["x"]
    assert [t.id for t in b.targets] == ["p", "q", "r"] and [t.span.col for t in b.targets] == [5, 8, 11]
    assert (b.span.line, b.span.col) == (3, 5)


def test_return_forms():
    one, = body("    return x")
    assert isinstance(one, ast.Return) and sx(one.values) == ["x"]
    assert sx(body("    return a, b + 1")[0].values) == ["a", ("+", "b", 1)]
    assert sx(body("    return (a, b)")[0].values) == ["a", "b"]  # same as `return a, b`
    assert sx(body("    return (a)")[0].values) == ["a"]


def test_repeat_with_and_without_a_name_and_nested():
    outer, plain = body("    repeat L as blocks {\n        repeat 2 { x = f(x) }\n    }\n    repeat n - 1 {\n    }")
    assert isinstance(outer, ast.Repeat) and outer.name == "blocks" and sx(outer.count) == "L"
    (inner,) = outer.body
    assert isinstance(inner, ast.Repeat) and inner.name is None and sx(inner.body) == [
        ("=", ["x"], ("call", "f", ["x"]))]
    assert plain.name is None and sx(plain.count) == ("-", "n", 1) and plain.body == []


# ----------------------------------------------------------------------------- definitions and types
def test_definition_params_types_defaults_and_returns():
    src = ("block B(x: f32[B, 1, 28, 28], y: bf16[], h: int = 4, p: float = 0.5, flag: bool = true,\n"
           "        mode: str = 'sum', d: i64[B, D / h, 4 * D, T - 1, (D + 1) // 2, 2 ** k]) -> (f32[B], i32[B]) {\n"
           "    return x, y\n}\n")
    (d,) = parse(src).definitions
    assert d.kind == "block" and d.name == "B"
    assert [(q.name, sx(q.type), None if q.default is None else sx(q.default)) for q in d.params] == [
        ("x", ("f32", "B", 1, 28, 28), None), ("y", ("bf16",), None), ("h", "int", 4), ("p", "float", 0.5),
        ("flag", "bool", True), ("mode", "str", ("str", "sum")),
        ("d", ("i64", "B", ("/", "D", "h"), ("*", 4, "D"), ("-", "T", 1), ("//", ("+", "D", 1), 2),
               ("**", 2, "k")), None)]
    assert all(isinstance(t, ast.TensorTypeExpr) for t in d.returns) and sx(d.returns) == [("f32", "B"), ("i32", "B")]
    assert isinstance(d.params[2].type, ast.ScalarTypeExpr)
    x = d.params[0]
    assert (x.span.line, x.span.col, x.span.end_col) == (1, 9, 29)
    assert (x.type.span.col, x.type.span.end_col) == (12, 29)


@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16", "f64", "i64", "i32", "bool"])
def test_every_dtype(dtype):
    (d,) = parse(f"model M(x: {dtype}[B]) -> {dtype}[B] {{ return x }}").definitions
    assert d.params[0].type.dtype == dtype and d.returns[0].dtype == dtype


def test_return_type_forms():
    none, single, paren, multi = parse(
        "block A() { }\nblock B() -> int { }\nblock C() -> (f32[B]) { }\nblock D() -> (int, f32[B],) { }").definitions
    assert none.returns is None and none.params == [] and none.body == []
    assert sx(single.returns) == ["int"] and sx(paren.returns) == [("f32", "B")]
    assert sx(multi.returns) == ["int", ("f32", "B")]


def test_train_sections_named_and_unnamed():
    src = ("model M(x: f32[B]) { return x }\n"
           "train M {\n  data = mnist('d', split='train'); eval = mnist('d', split='test')\n"
           "  loss = cross_entropy\n  optimizer = adamw(lr=3e-4)\n  schedule = cosine(warmup=10)\n  epochs = 1\n"
           "  steps = 10\n  batch = 32\n  metrics = [loss, accuracy]\n  clip = 1.0\n  seed = 0\n"
           "  checkpoint_every = 100\n  l1 = 0.0\n  l2 = 1e-4\n  eval_every = 50\n  eval_batches = 4\n}\n"
           "train {}\n")
    named, unnamed = parse(src).trains
    assert named.model == "M" and unnamed.model is None and unnamed.entries == []
    assert [e.key for e in named.entries] == [
        "data", "eval", "loss", "optimizer", "schedule", "epochs", "steps", "batch", "metrics", "clip", "seed",
        "checkpoint_every", "l1", "l2", "eval_every", "eval_batches"]
    assert (named.entries[1].span.line, named.entries[1].span.col) == (3, 37)
    assert (named.span.line, named.span.col, named.span.end_line) == (2, 1, 18)


# ----------------------------------------------------------------------------- layout
def test_newlines_are_flexible_where_unambiguous():
    src = ("# header comment\n\n\nmodel M(\n    x: f32[B,\n           D],   # a comment inside brackets\n"
           "    n: int = 2,\n)\n  -> f32[B, D]\n{\n\n    y = linear(x,\n               D)  # trailing\n\n"
           "    # a comment line\n    repeat n as r\n    {\n        y = y + \\\n            1\n    }\n"
           "    return y;\n}\n\n\ntrain\n{\n    steps = 1\n}")
    p = parse(src)
    (m,) = p.definitions
    assert [q.name for q in m.params] == ["x", "n"] and sx(m.returns) == [("f32", "B", "D")]
    assert [type(s).__name__ for s in m.body] == ["Assign", "Repeat", "Return"]
    assert sx(m.body[1].body) == [("=", ["y"], ("+", "y", 1))]
    assert p.trains[0].model is None and m.body[2].span.line == 21


def test_crlf_tabs_one_line_bodies_and_empty_files():
    p = parse("block A(x: f32[B]) -> f32[B] {\r\n\ty = x\r\n\treturn y\r\n}\r\n")
    assert [type(s).__name__ for s in p.definitions[0].body] == ["Assign", "Return"]
    assert parse("block A(x: f32[B]) { y = x; return y }").definitions[0].body[1].values[0].id == "y"
    assert parse("block A() {} block B() {} train {}").definitions[1].name == "B"
    empty = parse("")
    assert empty.definitions == [] and empty.trains == []
    assert parse("# only a comment").definitions == []


def test_spans_carry_file_and_source_for_excerpts():
    src = "block A(x: f32[B]) {\n    y = x + 1\n}\n"
    stmt = parse(src, "a.nn").definitions[0].body[0]
    plus = stmt.value
    assert str(plus.span) == "a.nn:2:9" and (plus.span.end_line, plus.span.end_col) == (2, 14)
    assert plus.span.source == src and plus.span.text() == "x + 1"
    assert plus.span.excerpt().splitlines()[1] == "            ^^^^^"


def test_grammar_ships_in_the_package_and_the_parser_is_built_once():
    assert resources.files("nndsl.grammar").joinpath("nndsl.lark").is_file()
    assert resources.files("nndsl.grammar").joinpath("bad_examples.nn").is_file()
    assert lark_parser() is lark_parser()


def test_repeat_is_also_a_callable_name():
    assert sx(expr("x.repeat(2, 1) + repeat(x, 3)")) == (
        "+", ("call", (".", "x", "repeat"), [2, 1]), ("call", "repeat", ["x", 3]))


def test_every_nn_example_in_the_language_reference_parses():
    doc = Path(__file__).resolve().parents[2] / "docs" / "language.md"
    blocks = re.findall(r"```nn\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 5
    for text in blocks:
        program = parse(text, "language.md")
        assert program.definitions, text


def test_every_program_in_examples_parses():
    paths = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.nn"))
    for path in paths:
        program = parse(path.read_text(encoding="utf-8"), str(path))
        assert program.models(), f"{path} defines no model"
