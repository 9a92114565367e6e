"""Bad input gives a located, readable NndslError (never a Lark exception or a traceback)."""
import os
import random

import pytest
from lark.exceptions import LarkError, UnexpectedToken

from frontend.fe_helpers import CNN, GPT
from nndsl.errors import (NndslConfigError, NndslError, NndslNameError, NndslSyntaxError,
                          NndslTypeError)
from nndsl.frontend.parser import parse, parse_tree
from nndsl.frontend.syntax_errors import bad_examples

BLOCK = "block A(x: f32[B]) -> f32[B] {{\n{}\n}}\n"  # the statement under test is on line 2


def fail(src: str, cls=NndslSyntaxError) -> NndslError:
    with pytest.raises(NndslError) as info:
        parse(src, "t.nn")
    err = info.value
    assert type(err) is cls, f"expected {cls.__name__}, got {type(err).__name__}: {err}"
    assert not isinstance(err, LarkError) and err.__cause__ is None
    assert err.__context__ is None or err.__suppress_context__, "a Lark exception would show in the traceback"
    return err


def check(err: NndslError, line: int, col: int, message: str, hint=None) -> None:
    """Location, message, the quoted line with a caret under column ``col``, and the hint."""
    text = str(err)
    head, quoted, caret, *rest = text.splitlines()
    assert head.startswith(f"t.nn:{line}:{col}: {err.kind}: "), text
    assert message in err.message, f"expected {message!r} in {err.message!r}"
    assert quoted == "    " + err.span.source_line(), text
    assert caret.index("^") == 4 + col - 1 and set(caret.strip()) == {"^"}, text
    if hint is None:
        assert err.hint is None, f"unexpected hint {err.hint!r}"
    else:
        assert err.hint and hint in err.hint, f"expected {hint!r} in hint {err.hint!r}"
        assert rest == ["    " + err.hint]


# ----------------------------------------------------------------------------- syntax errors
@pytest.mark.parametrize("stmt, col, message, hint", [
    # missing comma between arguments
    ("    y = linear(x 3)", 18, "expected ',' or ')' to close the call opened at 2:15, found '3'",
     "is a ',' missing"),
    # an operator with nothing after it
    ("    y = x +", 12, "expected an expression, found the end of the line", None),
    ("    y = x +   # a comment", 12, "expected an expression, found the end of the line", None),
    ("    y = ", 8, "expected an expression, found the end of the line", None),
    ("    y = f(a, *b)", 14, "expected an expression or ')' to close the call opened at 2:10", None),
    # '==' is not an operator
    ("    y = attention(x, causal==true)", 28, "'==' is not an nndsl operator", "use '='"),
    ("    y = x == 1", 11, "'==' is not an nndsl operator", "no comparisons"),
    # a call used as a statement; misspelled keywords at the start of a statement
    ("    linear(x, 3)", 11, "expected '=' after the name, found '('", "a statement is"),
    ("    retrun x", 12, "expected '=' after the name, found 'x'", "did you mean 'return'?"),
    ("    repaet 3 as blocks {\n    }", 12, "expected '=' after the name", "did you mean 'repeat'?"),
    ("    repeat 3 a blocks {\n    }", 14, "expected 'as' or '{' after the repeat count, found 'a'",
     "did you mean 'as'?"),
    # two statements on one line; a stray token at statement start
    ("    x = linear(x, 3) relu(x)", 22, "expected the end of the statement (a new line or ';'), found 'relu'",
     None),
    ("    3 = x", 5, "expected a statement: 'name = value', 'return value' or 'repeat n { ... }', found '3'",
     None),
    # attributes, methods
    ("    y = x.", 11, "expected a method name after '.'", None),
    # brackets that do not match
    ("    y = f(x))", 13, "unmatched ')'", "no '(' for it to close"),
    ("    y = f(x]", 12, "expected ')' to close the call opened at 2:10, found ']'", None),
    ("    y = x]", 10, "unmatched ']'", "no '[' for it to close"),
    ("    y = f(x}", 12, "expected ',' or ')' to close the call opened at 2:10, found '}'", None),
    ("    y = f([x)", 13, "expected ']' to close the list opened at 2:11, found ')'", None),
    ("    y = x[0)", 12, "expected ']' to close the subscript opened at 2:10, found ')'", None),
    # stray characters and unterminated strings
    ("    y = x $ 2", 11, "unexpected character '$'", None),
    ("    y = x < 2", 11, "unexpected character '<'", "no comparison operators"),
    ('    y = "abc', 9, "unterminated string", 'add the closing "'),
    ("    y = f('abc, 2)", 11, "unterminated string", "add the closing '"),
    # keywords are not names
    ("    as = 3", 5, "expected a statement", "'as' is a keyword"),
])
def test_statement_syntax_errors(stmt, col, message, hint):
    check(fail(BLOCK.format(stmt)), 2, col, message, hint)


@pytest.mark.parametrize("src, line, col, message, hint", [
    ("modle A(x: f32[B]) {\n}", 1, 1, "expected 'block', 'model' or 'train', found 'modle'", "did you mean 'model'?"),
    ("model A(x: f32[B]) {\n}\ntrian A {\n}", 3, 1, "found 'trian'", "did you mean 'train'?"),
    ("bolck A() {}", 1, 1, "expected 'block', 'model' or 'train'", "did you mean 'block'?"),
    ("x = 3", 1, 1, "expected 'block', 'model' or 'train', found 'x'", None),
    ("block (x: f32[B]) {}", 1, 7, "expected the name of the block, found '('", None),
    ("model {}", 1, 7, "expected the name of the model", None),
    ("block A {}", 1, 9, "expected '(' and the parameter list after the name", None),
    ("block A(x) {}", 1, 10, "expected ':' and a type after the parameter name, found ')'", None),
    ("block A(x f32[B]) {}", 1, 11, "expected ':' and a type after the parameter name", None),
    ("block A(model: int) {}", 1, 9, "expected a parameter name, found 'model'", "'model' is a keyword"),
    ("block A(x: ) {}", 1, 12, "expected a type, such as f32[B, D] or int, found ')'", None),
    ("block A(x: int,) -> {}", 1, 21, "expected a type", None),
    ("block A(x: f32[B) {}", 1, 17, "expected ']' to close the tensor type opened at 1:15, found ')'", None),
    ("block A(x: f32[B, T {\n}", 1, 21, "expected ',' or ']' to close the tensor type opened at 1:15", None),
    ("block A(x: int) return x }", 1, 17, "expected '->' and the return type, or '{' to start the body", None),
    ("block A() -> f32[B]\n    return x\n}", 1, 20, "expected '{' to start the body, found the end of the line",
     None),
    ("train { steps 5 }", 1, 15, "expected '=' after the setting's name, found '5'", None),
    ("train {\n  steps: 5\n}", 2, 8, "expected '=' after the setting's name, found ':'", None),
    ("train {\n  5\n}", 2, 3, "expected a setting: 'key = value'", None),
    ("train 3 {}", 1, 7, "expected the model's name or '{' after 'train'", None),
    ("block A() {\n    return x\n}}", 3, 2, "unmatched '}'", "no '{' for it to close"),
])
def test_definition_and_section_syntax_errors(src, line, col, message, hint):
    check(fail(src), line, col, message, hint)


def test_unclosed_bracket_is_reported_where_the_next_statement_starts():
    err = fail(BLOCK.format("    y = linear(x, 3\n    return y"))
    check(err, 3, 5, "expected ',' or ')' to close the call opened at 2:15, found 'return'")  # no ',' hint
    err = fail(BLOCK.format("    y = [1, 2\n    return y"))
    check(err, 3, 5, "expected ',' or ']' to close the list opened at 2:9, found 'return'")


def test_missing_closing_brace_at_end_of_file():
    err = fail("block A(x: f32[B]) -> f32[B] {\n    y = x\n    return y\n")
    check(err, 3, 13, "unexpected end of file: expected '}' to close the body of block 'A' opened at 1:30")
    err = fail("model M(x: f32[B]) {\n    repeat 3 {\n        x = x\n")
    check(err, 3, 14, "expected '}' to close the body of 'repeat' opened at 2:14")
    err = fail("model M(x: f32[B]) {\n    repeat 3 {\n        x = x\n    return x\n}")  # the last '}' closes repeat
    check(err, 5, 2, "expected '}' to close the body of model 'M' opened at 1:20")
    err = fail("train {\n  steps = 5")
    check(err, 2, 12, "expected '}' to close the train section opened at 1:7")
    err = fail("block A(x: f32[B]) {\n    y = f(x,")
    check(err, 2, 13, "expected ')' to close the call opened at 2:10")


@pytest.mark.parametrize("src, line, col, message, hint", [
    # a block left open: the next definition is reported as the brace's, not as a bad name
    ("block A(x: f32[B]) -> f32[B] {\n    y = x\n    return y\n\nmodel M(x: f32[B]) -> f32[B] {\n    return A(x)\n}\n",
     1, 30, "unclosed '{': the body of block 'A' has no '}' before 'model' at 5:1", "before line 5"),
    ("model M(x: f32[B]) -> f32[B] {\n    return x\ntrain {\n    steps = 3\n}\n",
     1, 30, "unclosed '{': the body of model 'M' has no '}' before 'train' at 3:1", "before line 3"),
    ("train {\n    steps = 3\nblock A() {\n}\n", 1, 7, "the train section has no '}' before 'block' at 3:1", None),
    # the inner '{' lost its '}': the '}' at column 1 was meant for the model, so 'repeat' is unclosed
    ("model M(x: f32[B]) -> f32[B] {\n    repeat 2 {\n        x = x\n    return x\n}\n"
     "model N(x: f32[B]) -> f32[B] {\n    return x\n}\n",
     2, 14, "unclosed '{': the body of 'repeat' has no '}' before 'model' at 6:1", "before line 5"),
])
def test_unclosed_brace_in_the_middle_of_a_file_is_reported_at_the_brace(src, line, col, message, hint):
    err = fail(src)
    check(err, line, col, message, hint or "add '}' to close it")


# ----------------------------------------------------------------------------- errors after parsing
@pytest.mark.parametrize("src, line, col, message, hint", [
    ("block A(x: float32[B]) {}", 1, 12, "unknown dtype 'float32'", "did you mean 'f32'?"),
    ("block A(x: int64[B]) {}", 1, 12, "unknown dtype 'int64'", "did you mean 'i64'?"),
    ("block A(x: f23[B]) {}", 1, 12, "unknown dtype 'f23'", "did you mean 'f32'"),
    ("block A(x: qq[B]) {}", 1, 12, "unknown dtype 'qq'", "dtypes are f32, f16, bf16, f64, i64, i32, bool"),
    ("block A(x: f32) {}", 1, 12, "'f32' needs a shape to be a tensor type", "f32[B, D]"),
    ("block A(x: integer) {}", 1, 12, "unknown type 'integer'", "did you mean 'int'?"),
    ("block A(x: tensor) {}", 1, 12, "unknown type 'tensor'", "int, float, bool, str"),
    ("block A(x: f32[B, 2.5]) {}", 1, 19, "a dimension must be an integer, a name, or arithmetic", "f32[B, T"),
    ("block A(x: f32[B, f(T)]) {}", 1, 19, "a dimension must be", "f32[B, D / heads]"),
    ("block A(x: f32[-1]) {}", 1, 16, "a dimension must be", "f32[B, D / heads]"),
    ("block A(x: f32[None]) {}", 1, 16, "a dimension must be", "f32[B, D / heads]"),
    ("block A() {\n    return True\n}", 2, 12, "'True' is not a value in nndsl", "did you mean 'true'?"),
    ("block A() {\n    y = f(a=1, 2)\n}", 2, 16, "a positional argument cannot follow a keyword argument", "'a='"),
    ("block A() {\n    y = f(a=1, a=2)\n}", 2, 16, "keyword argument 'a' is given twice", None),
])
def test_errors_found_while_building_the_ast(src, line, col, message, hint):
    check(fail(src), line, col, message, hint)


@pytest.mark.parametrize("src, cls, line, col, message, hint", [
    ("block A(x: f32[B]) {}\nmodel A(y: f32[B]) {}", NndslNameError, 2, 7, "'A' is defined twice",
     "first definition (block) is at t.nn:1:1"),
    ("block A(x: f32[B], h: int, x: int) {}", NndslNameError, 1, 28, "parameter 'x' of 'A' is declared twice",
     "t.nn:1:9"),
    ("block A(x: f32[B] = 3) {}", NndslTypeError, 1, 21, "tensor parameter 'x' cannot have a default value",
     "only int, float, bool and str"),
    ("block A() {\n    a, b, a = f()\n}", NndslNameError, 2, 11, "'a' appears twice on the left of '='", None),
    ("model M(x: f32[B]) {}\ntrain M {\n  steps = 3\n  batch = 2\n  steps = 4\n}", NndslConfigError, 5, 3,
     "train key 'steps' is set twice", "t.nn:3:3"),
    ("model GPT(x: f32[B]) {}\ntrain GTP { }", NndslNameError, 2, 7, "'GTP' is not a model of this file",
     "did you mean 'GPT'?"),
    ("block A(x: f32[B]) {}\nmodel M(x: f32[B]) {}\ntrain A { }", NndslNameError, 3, 7, "'A' is a block, not a model",
     "models here: M"),
    ("model M(x: f32[B]) {}\ntrain { }\ntrain { }", NndslConfigError, 3, 1,
     "a second train section without a model name", "t.nn:2:1"),
])
def test_front_end_checks(src, cls, line, col, message, hint):
    check(fail(src, cls), line, col, message, hint)


# ----------------------------------------------------------------------------- the sample bad inputs
def test_every_sample_bad_input_fails_and_gets_its_message():
    groups = bad_examples()
    assert len(groups) >= 15
    states: dict = {}
    for label, snippets in groups:
        message = label.split(" || ")[0]
        assert snippets, f"group {label!r} has no samples"
        for snippet in snippets:
            with pytest.raises(UnexpectedToken) as info:
                parse_tree(snippet)
            e = info.value
            key = (e.state.position, frozenset(e.accepts))
            assert states.setdefault(key, label) == label, f"{snippet!r}: state shared by {label!r} and {states[key]!r}"
            err = fail(snippet)
            assert err.message.startswith(message + ", found "), f"{snippet!r}: {err.message!r}"


def test_random_corruptions_never_escape_as_python_errors():
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    pieces = list("()[]{},:;=+-*/.@%\"'#\n\t abx1_$!<>\\") + ["==", "->", "...", "return", "model", "1e", "f32["]
    for trial in range(150):
        src = list(rng.choice([GPT, CNN]))
        for _ in range(rng.randint(1, 3)):
            k = rng.randrange(len(src))
            if rng.random() < 0.5:
                del src[k]
            else:
                src.insert(k, rng.choice(pieces))
        text = "".join(src)
        try:
            parse(text, "f.nn")
        except NndslError as err:
            out = str(err)
            assert err.span is not None and out.startswith(f"f.nn:{err.span.line}:{err.span.col}: "), (seed, out)
            assert "^" in out, f"seed {seed}, trial {trial}: no caret in\n{out}"
        except Exception as exc:  # pragma: no cover - the failure message carries the reproducer
            pytest.fail(f"seed {seed}, trial {trial}: {type(exc).__name__}: {exc}\n--- input ---\n{text}")
