"""The highlighters' static word lists agree with the compiler's registries and the grammar."""
from __future__ import annotations

import re
from pathlib import Path

from nndsl.editors import words as W

ROOT = Path(__file__).resolve().parents[2]


def test_keywords_are_the_grammars():
    grammar = (ROOT / "grammar" / "nndsl.lark").read_text()
    literal_words = set(re.findall(r'^[A-Z_]+:\s*"([A-Za-z]+)"\s*$', grammar, re.M))
    ours = set(W.DECLARATIONS) | set(W.KEYWORDS) | set(W.CONSTANTS)
    assert ours == literal_words, f"grammar keywords {sorted(literal_words)}, lexer keywords {sorted(ours)}"


def test_types_are_the_compilers():
    from nndsl.elaborate import SCALAR_TYPES
    from nndsl.ir.types import DTYPES

    assert set(W.DTYPES) == set(DTYPES)
    assert set(W.SCALAR_TYPES) == set(SCALAR_TYPES)


def test_builtins_are_the_stdlib():
    from nndsl import layers
    from nndsl.elab.scalar import SCALAR_FUNCS

    stdlib = set(layers.load_all())
    assert set(W.LAYERS) == stdlib, (f"add to nndsl/editors/words.py: {sorted(stdlib - set(W.LAYERS))}; "
                                     f"remove: {sorted(set(W.LAYERS) - stdlib)}")
    assert set(W.SCALAR_FUNCS) == set(SCALAR_FUNCS)


def test_train_functions_are_the_runtimes():
    from nndsl.loss_terms import LOSS_FUNCTIONS
    from nndsl.runtime import config as C

    known = set(C.DATASETS) | set(C.OPTIMIZERS) | set(C.SCHEDULES) | set(C.LOSSES) | set(LOSS_FUNCTIONS) \
        | set(C.METRICS)
    assert set(W.TRAIN_FUNCTIONS) == known, (f"add to nndsl/editors/words.py: {sorted(known - set(W.TRAIN_FUNCTIONS))}; "
                                             f"remove: {sorted(set(W.TRAIN_FUNCTIONS) - known)}")


def test_number_patterns_are_the_grammars():
    grammar = (ROOT / "grammar" / "nndsl.lark").read_text()
    number = re.search(r"^NUMBER:\s*/(.*)/\s*$", grammar, re.M).group(1)
    for text in ["0", "42", "1_000", "0.5", ".5", "2.", "1e-3", "2.5E+2", "1_0.0_1e7"]:
        whole = re.fullmatch(number, text) is not None
        ours = re.fullmatch(W.FLOAT, text) is not None or re.fullmatch(W.INTEGER, text) is not None
        assert ours == whole, text
        assert (re.fullmatch(W.FLOAT, text) is not None) == ("." in text or "e" in text.lower()), text
