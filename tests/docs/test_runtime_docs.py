"""docs/runtime.md is what ``nndsl.runtime.docs`` generates from the tables that check a train
section, it describes every entry of those tables, and each of its examples passes the checks."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from nndsl.errors import NndslConfigError
from nndsl.frontend.parser import parse
from nndsl.runtime import config as C
from nndsl.runtime import data, docs
from nndsl.runtime.config import train_config
from nndsl.runtime.metrics import DESCRIPTIONS

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "runtime.md"
MODEL = "model M(x: f32[B, 3], width: int = 4) -> f32[B, 2] {\n    return linear(x, 2)\n}\n"


def configure(body: str) -> C.TrainConfig:
    """A train-section body through the parser and the config evaluator, as `nndsl check` does."""
    prog = parse(MODEL + "train {\n" + body.strip("\n") + "\n}\n", "doc.nn")
    return train_config(prog.trains[0], {"width": 4}, ROOT)


def test_the_page_is_what_the_generator_writes():
    assert PAGE.read_text(encoding="utf-8") == docs.render(), \
        "docs/runtime.md is stale: regenerate it with  python -m nndsl.runtime.docs > docs/runtime.md"


EXAMPLES = docs.nn_examples(PAGE.read_text(encoding="utf-8"))


def test_the_page_has_an_example_for_every_entry():
    text = "\n".join(EXAMPLES)
    for key in C.KEYS:
        assert re.search(rf"^{key} = ", text, flags=re.M), f"no example sets '{key}'"
    for table in (C.DATASETS, C.LOSSES, C.OPTIMIZERS, C.SCHEDULES):
        for name in table:
            assert re.search(rf"= {name}\b", text), f"no example uses {name}"
    for metric in C.METRICS:
        assert re.search(rf"metrics = \[.*\b{metric}\b", text), f"no example asks for the metric {metric}"


@pytest.mark.parametrize("body", EXAMPLES, ids=[e.strip().splitlines()[0][:40] for e in EXAMPLES])
def test_every_example_passes_the_train_section_checks(body):
    cfg = configure(body)
    for line in body.strip().splitlines():  # and sets what it says
        key = line.split("=")[0].strip()
        assert key in cfg.spans, f"{line!r} did not set {key}"


def test_the_example_check_can_fail():
    with pytest.raises(NndslConfigError, match="expected a string"):
        configure("device = cpu")  # a device is a string
    with pytest.raises(NndslConfigError, match="needs the argument 'every'"):
        configure("schedule = step()")


def test_every_entry_is_described():
    comments = docs.field_comments()
    for key in C.KEYS:
        assert comments.get(key) or docs.KEY_NOTES.get(key), f"train key '{key}' has no description"
    for name, fn in data.DATASETS.items():
        assert (fn.__doc__ or "").strip(), f"dataset {name} has no docstring"
    for prose, table in ((docs.LOSSES, C.LOSSES), (docs.OPTIMIZERS, C.OPTIMIZERS), (docs.SCHEDULES, C.SCHEDULES),
                         (DESCRIPTIONS, dict.fromkeys(C.METRICS))):
        assert set(prose) == set(table), f"described {sorted(prose)} vs checked {sorted(table)}"
    page = PAGE.read_text(encoding="utf-8")
    for table in (C.DATASETS, C.LOSSES, C.OPTIMIZERS, C.SCHEDULES):
        for name, sig in table.items():
            section = page.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
            for arg in sig:  # each argument with its default
                default = "required" if arg.default is C.REQUIRED else f"`{docs.literal(arg.default)}`"
                assert f"| `{arg.name}` |" in section and default in section, f"{name}({arg.name}) is not documented"


def test_field_comments_follow_continuation_lines():
    comments = docs.field_comments()
    assert comments["precision"].startswith("fp32 | bf16 | fp16") and comments["precision"].endswith("scales the loss")
    assert "batch" in comments and "#" not in "".join(comments.values())


def test_the_language_reference_links_here():
    language = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    assert "(runtime.md)" in language
