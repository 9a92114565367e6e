"""No input text reaches generated code: file names, hyperparameters, data paths and identifiers
carrying line breaks, quotes and a payload never run, and never appear in the generated source.

The payload sets ``builtins.PWNED`` and writes a marker file in the working directory; each test
asserts neither happened. Inputs the language rejects must give a located NndslError.
"""
from __future__ import annotations

import builtins

import pytest
import torch
from click.testing import CliRunner

import nndsl
from nndsl.backend import safety
from nndsl.backend.emit import generate_forward
from nndsl.cli import main
from nndsl.compiler import build
from nndsl.errors import NndslError, NndslLoweringError
from nndsl.ops import registry

BREAKS = ["\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
QUOTES = ["'", '"', "'''", '"""', "\\", "\\'", ")"]
PAYLOAD = "__import__('builtins').__setattr__('PWNED', 1) or open('MARKER', 'w')"


def crafted(brk: str, quote: str) -> str:
    """A string that, pasted into Python source, would end a comment/literal and run PAYLOAD."""
    return f"m{quote}{brk}{PAYLOAD}{brk}#{quote}"


ALL = [crafted(b, q) for b in BREAKS for q in QUOTES]

TINY = """model Tiny(x: f32[B, 5], hidden: int = 4) -> f32[B, 1] {
    return linear(relu(linear(x, hidden)), 1)
}

train {
    data      = synthetic_regression(n=40, features=5, noise=0.01, seed=1)
    loss      = mse
    optimizer = sgd(lr=1e-2)
    batch     = 16
}
"""


@pytest.fixture(autouse=True)
def _sandbox(tmp_path, monkeypatch):
    """Run in tmp_path; fail if the payload ran."""
    monkeypatch.chdir(tmp_path)
    yield
    assert not hasattr(builtins, "PWNED"), "the payload ran (builtins.PWNED is set)"
    assert not (tmp_path / "MARKER").exists(), "the payload ran (MARKER written)"


def no_input_text(source: str, text: str) -> None:
    """No 6-character window of ``text`` (beyond plain words the generated code uses) is in ``source``."""
    for i in range(len(text) - 5):
        window = text[i:i + 6]
        assert window not in source, f"generated source contains {window!r} from the input"


def located(fn) -> None:
    """``fn`` is accepted or fails with a located NndslError, never another exception."""
    try:
        fn()
    except NndslError as e:
        assert e.span is not None, f"unlocated error: {e}"


# ------------------------------------------------------------------------------------ file names
@pytest.mark.parametrize("brk", BREAKS, ids=[repr(b) for b in BREAKS])
def test_file_names_never_run(tmp_path, brk):
    names = [crafted(brk, q) + ".nn" for q in QUOTES]
    for name in names:
        path = tmp_path / name
        path.write_text(TINY)
        compiled = build(path)
        no_input_text(compiled.python_source, name)
        assert compiled.module(torch.randn(3, 5)).shape == (3, 1)
        assert nndsl.compile(path)(torch.randn(2, 5)).shape == (2, 1)
    # the CLI: check, compile (both outputs) and one training step, for one of the names
    path = tmp_path / names[0]
    for args in (["check", path], ["compile", path], ["compile", path, "--emit", "python"],
                 ["run", path, "--steps", "1", "--no-progress", "--out", tmp_path / "run"]):
        res = CliRunner().invoke(main, [str(a) for a in args], env={"NNDSL_DEBUG": ""})
        assert res.exit_code == 0 and "Traceback" not in res.output, res.output
        if args[-1] == "python":
            no_input_text(res.output, names[0])


# ------------------------------------------------------------------ hyperparameters and data paths
@pytest.mark.parametrize("value", ALL[::5])
def test_hyperparameter_values_never_run(tmp_path, value):
    path = tmp_path / "tiny.nn"
    path.write_text(TINY)
    located_or_usage = (NndslError,)
    with pytest.raises(located_or_usage):
        nndsl.compile(path, hidden=value)
    res = CliRunner().invoke(main, ["check", str(path), "--set", f"hidden={value}"], env={"NNDSL_DEBUG": ""})
    assert res.exit_code != 0 and "Traceback" not in res.output and "internal error" not in res.output, res.output


@pytest.mark.parametrize("value", [v for v in ALL if "\n" not in v and '"' not in v and "\\" not in v][::3])
def test_dataset_paths_never_run(tmp_path, value):
    path = tmp_path / "tiny.nn"
    path.write_text(TINY.replace("synthetic_regression(n=40, features=5, noise=0.01, seed=1)", f'npz("{value}")'))
    res = CliRunner().invoke(main, ["run", str(path), "--steps", "1", "--no-progress", "--out", str(tmp_path / "o")],
                             env={"NNDSL_DEBUG": ""})
    assert res.exit_code == 1 and "Traceback" not in res.output and "internal error" not in res.output, res.output


# ------------------------------------------------------------------------------------ identifiers
IDENT_SLOTS = {  # where an identifier of the source sits; {} is replaced by the crafted text
    "layer name": 'model M(x: f32[B, 5]) -> f32[B, 2] {{ return linear(x, 2, name="{}") }}',
    "value name": "model M(x: f32[B, 5]) -> f32[B, 2] {{ h{} = linear(x, 2)\n return h }}",
    "dim name": "model M(x: f32[B{}, 5]) -> f32[B, 2] {{ return linear(x, 2) }}",
    "model name": "model M{}(x: f32[B, 5]) -> f32[B, 2] {{ return linear(x, 2) }}",
    "block name": "block K{}(x: f32[B, 5]) -> f32[B, 2] {{ return linear(x, 2) }}\n"
                  "model M(x: f32[B, 5]) -> f32[B, 2] {{ return K(x) }}",
}


@pytest.mark.parametrize("slot", IDENT_SLOTS)
def test_identifiers_with_line_breaks_are_rejected_with_a_location(slot):
    for text in ALL:
        src = IDENT_SLOTS[slot].format(text.replace("{", "").replace("}", ""))
        located(lambda: build(src))


SCOPE_NAMES = ["self", "torch", "F", "rt", "K", "kern", "forward", "d0", "v0", "p0", "float", "exec",
               "class", "lambda", "def", "import", "yield", "__import__", "print"]


def _model(dims: tuple[str, str], value: str, hyper: str) -> str:
    b, t = dims
    return f"""model M(x: f32[{b}, {t}, 6], {hyper}: int = 5) -> f32[{b}, {t}, 3] {{
    {value} = linear(x, {hyper}) * (1.0 / sqrt({t}))
    {value} = {value}.reshape([{b} * {t}, {hyper}]).reshape([{b}, {t}, {hyper}])
    return softmax(linear(relu({value}), 3), dim=-1)
}}"""


@pytest.mark.parametrize("name", SCOPE_NAMES)
def test_names_of_the_generated_scope_cannot_be_shadowed(name):
    """Dims, values and hyperparameters named like the generated code's scope or like Python
    keywords give the plain model."""
    plain = nndsl.compile(_model(("B", "T"), "h", "H"))
    odd = [nndsl.compile(_model((name, "T"), "h", "H")), nndsl.compile(_model(("B", name), "h", "H")),
           nndsl.compile(_model(("B", "T"), name, "H")), nndsl.compile(_model(("B", "T"), "h", name))]
    x = torch.randn(2, 7, 6)
    for m in odd:
        m.load_state_dict(plain.state_dict())
        torch.testing.assert_close(m(x), plain(x))


def test_none_as_a_name_is_a_located_syntax_error():
    for args in ((("None", "T"), "h", "H"), (("B", "T"), "None", "H"), (("B", "T"), "h", "None")):
        with pytest.raises(NndslError) as err:
            build(_model(*args))
        assert err.value.span is not None


@pytest.mark.parametrize("layer", ["class", "def", "lambda", "None", "to", "forward", "parameters", "graph",
                                   "training", "import", "__class__"])
def test_keywords_and_module_names_as_layer_names(layer):
    """Either the model works with state_dict keys named as written, or a located NndslError."""
    src = f"""block Inner(x: f32[B, 4]) -> f32[B, 4] {{ return linear(x, 4, name="{layer}") }}
model M(x: f32[B, 4]) -> f32[B, 4] {{
    repeat 2 as blocks {{ x = Inner(x, name="{layer}") }}
    return linear(x, 4, name="{layer}")
}}"""
    try:
        model = nndsl.compile(src)
    except NndslError as e:
        assert e.span is not None and layer in str(e), str(e)
        return
    keys = list(model.state_dict())
    assert f"blocks.1.{layer}.weight" in keys or f"blocks.1.{layer}.{layer}.weight" in keys, keys
    assert f"{layer}.weight" in keys, keys
    x = torch.randn(3, 4)
    model.eval()  # sets .training on every sub-module
    ref = x
    sd = model.state_dict()
    for i in range(2):
        w = [k for k in keys if k.startswith(f"blocks.{i}.") and k.endswith("weight")][0]
        ref = torch.nn.functional.linear(ref, sd[w], sd[w[:-6] + "bias"])
    ref = torch.nn.functional.linear(ref, sd[f"{layer}.weight"], sd[f"{layer}.bias"])
    torch.testing.assert_close(model(x), ref)


@pytest.mark.parametrize("expr,ref", [
    ('x * float("inf")', lambda x: x * float("inf")),
    ('x + float("-inf")', lambda x: x - float("inf")),
    ('x - float("nan")', lambda x: x - float("nan")),
    ('float("inf") - x', lambda x: float("inf") - x),
])
def test_inf_and_nan_attributes_are_values(expr, ref):
    model = nndsl.compile(f"model M(x: f32[B, 3]) -> f32[B, 3] {{ return {expr} }}")
    x = torch.randn(4, 3)
    torch.testing.assert_close(model(x), ref(x), equal_nan=True)
    assert "inf" not in build(f"model M(x: f32[B, 3]) -> f32[B, 3] {{ return {expr} }}").python_source.replace(
        "float('inf')", "").replace("float('-inf')", "")


# ------------------------------------------------------------------------- the safety net itself
@pytest.mark.parametrize("bad", [
    "import os",
    "def forward(self, v0):\n    return __import__('os').system('true')\n",
    "def forward(self, v0):\n    return v0.__class__\n",
    "def forward(self, v0):\n    x = v0\n    return x\n",
    "def forward(self, v0):\n    return F.relu(v0, 'payload')\n",
    "def forward(self, v0):\n    return [v for v in v0]\n",
    "def forward(self, v0):\n    return lambda: v0\n",
    "def forward(self, v0):\n    return v0 if v0 else v0\n",
    "def forward(self, v0):\n    return eval('1')\n",
    "def forward(self, v0):\n    K = v0\n    return K\n",
    "def forward(self, v0):\n    return F.relu(v0, **K)\n",
    "def forward(self, v0):\n    return v0 + 1e999\n",
    "def forward(self, v0):\n    return v0.evil_method()\n",
    "def forward(self, v0):\n    return b'x'\n",
    "def forward(self, v0=1):\n    return v0\n",
    "def forward(self, v0):\n    return v0\ndef other(self):\n    return 1\n",
    "def forward(self, v0):\n    for v1 in v0: pass\n    return v0\n",
])
def test_safety_check_refuses_anything_else(bad):
    with pytest.raises(NndslLoweringError):
        safety.check(bad)


def test_safety_check_accepts_every_example_and_fires_on_a_bad_lowering():
    g = build("model M(x: f32[B, 3]) -> f32[B, 3] { return relu(x) }").graph
    generate_forward(g)  # the torch table passes
    registry.register_lowering("evil-test", "relu", lambda e: f"__import__('os').system('touch MARKER') or {e.ins[0]}")
    registry.register_lowering("evil-test", "add_s", lambda e: f"{e.ins[0]} + {e.attrs['value']!r}")
    registry.register_lowering("kern-test", "relu", lambda e: f"kern.{'x' * 3}({e.ins[0]})")
    try:
        with pytest.raises(NndslLoweringError, match="safety check"):
            generate_forward(g, backend="evil-test")
        with pytest.raises(NndslLoweringError, match="attribute 'xxx'"):
            generate_forward(g, backend="kern-test")
        # a string spliced raw by a careless lowering is refused too
        g2 = build("model M(x: f32[B, 3]) -> f32[B, 3] { return x + 1.5 }").graph
        g2.nodes[-1].attrs["value"] = "'payload'"
        with pytest.raises(NndslLoweringError, match="constant of type str"):
            generate_forward(g2, backend="evil-test")
    finally:
        for b in ("evil-test", "kern-test"):
            registry.LOWERINGS.pop(b, None)


def test_lowering_table_falls_back_to_the_torch_emit():
    g = build("model M(x: f32[B, 3]) -> f32[B, 3] { return relu(x) * 2.0 }").graph
    registry.register_lowering("alt-test", "relu", lambda e: f"torch.clamp_min({e.ins[0]}, 0.0)")
    try:
        src = generate_forward(g, backend="alt-test").source
        assert "torch.clamp_min(v0, 0.0)" in src and "v1 * 2.0" in src, src
        assert registry.emitter("mul_s", "alt-test") is registry.get("mul_s").emit
        with pytest.raises(RuntimeError, match="two lowerings"):
            registry.register_lowering("alt-test", "relu", lambda e: e.ins[0])
    finally:
        registry.LOWERINGS.pop("alt-test", None)


def test_lit_sends_other_values_through_the_constants_table():
    g = build("model M(x: f32[B, 3]) -> f32[B, 3] { return relu(x) }").graph
    consts: list = []
    e = registry.EmitCtx(g.nodes[-1], ["v0"], {}, {}, consts)
    assert e.lit("tanh") == "'tanh'"
    assert e.lit(float("nan")) == "float('nan')" and e.lit(-2) == "-2" and e.lit((1,)) == "(1,)"
    assert e.lit("x'\n__import__('os')") == "K[0]" and consts == ["x'\n__import__('os')"]
    assert e.lit(torch.float16) == "K[1]" and consts[1] is torch.float16
    bare = registry.EmitCtx(g.nodes[-1], ["v0"], {})
    with pytest.raises(NndslLoweringError):
        bare.lit("not allowed")


def test_the_decode_step_is_checked_too():
    from nndsl.backend import safety
    from nndsl.errors import NndslLoweringError

    ok = "def step(self, cache, pos, v0):\n    v1 = kv.attend(cache, 0, v0, v0, v0, None, False)\n    return v1\n"
    safety.check(ok, name="step", fixed=("self", "cache", "pos"), names=frozenset({"kv"}),
                 attrs=frozenset({"attend"}))
    for bad in (ok.replace("kv.attend", "kv.system"), ok.replace("v1 = ", "v1 = __import__('os') or "),
                ok.replace("cache, 0", "cache, 'x'")):
        with pytest.raises(NndslLoweringError, match="safety check"):
            safety.check(bad, name="step", fixed=("self", "cache", "pos"), names=frozenset({"kv"}),
                         attrs=frozenset({"attend"}))
