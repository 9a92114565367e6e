"""Train sections -> TrainConfig: values, defaults, overrides, and located errors with did-you-mean."""
from __future__ import annotations

from pathlib import Path

import pytest
from runtime.rtkit import section, source_line

from nndsl.errors import NndslConfigError
from nndsl.runtime.config import KEYS, TrainConfig


def test_full_section():
    cfg = section('''
    data       = text("in.txt", context=ctx * 2, split=0.8)
    eval       = text("in.txt", ctx, part="val")
    loss       = cross_entropy(label_smoothing=0.1)
    optimizer  = adamw(lr=3e-4, betas=[0.9, 0.95], weight_decay=0.1)
    schedule   = cosine(warmup=10, min_lr=1e-5)
    steps      = 300
    batch      = width + 1
    clip       = 1.0
    l1         = 1e-5
    l2         = -(-2) * 1e-4
    metrics    = [loss, perplexity]
    seed       = 1337
    eval_every = 50
    eval_batches = 4
    checkpoint_every = 100
    workers    = 0
    device     = "cpu"
    ''', base_dir=Path("/somewhere"))
    assert cfg.data.name == "text" and cfg.data.kwargs == {"path": "in.txt", "context": 16, "split": 0.8,
                                                          "part": "train"}
    assert cfg.eval.kwargs["context"] == 8 and cfg.eval.kwargs["part"] == "val"
    assert cfg.loss.name == "cross_entropy" and cfg.loss.kwargs == {"label_smoothing": 0.1}
    assert cfg.optimizer.kwargs == {"lr": 3e-4, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1}
    assert cfg.schedule.name == "cosine" and cfg.schedule.kwargs == {"warmup": 10, "min_lr": 1e-5}
    assert (cfg.steps, cfg.epochs, cfg.mode, cfg.batch, cfg.clip) == (300, None, "steps", 5, 1.0)
    assert cfg.l1 == 1e-5 and cfg.l2 == pytest.approx(2e-4)
    assert cfg.metrics == ["loss", "perplexity"] and cfg.seed == 1337 and cfg.device == "cpu"
    assert (cfg.eval_every, cfg.eval_batches, cfg.checkpoint_every) == (50, 4, 100)
    assert cfg.base_dir == Path("/somewhere")
    assert cfg.spans["optimizer"].line == source_line('''
    data       = text("in.txt", context=ctx * 2, split=0.8)
    eval       = text("in.txt", ctx, part="val")
    loss       = cross_entropy(label_smoothing=0.1)
    optimizer  = adamw''', "optimizer")
    assert cfg.as_dict()["optimizer"]["name"] == "adamw"


def test_defaults_and_bare_names():
    cfg = section('    data = mnist\n    loss = mse\n    optimizer = sgd\n    schedule = constant\n')
    assert cfg.data.kwargs == {"root": "data/mnist", "split": "train", "normalize": True}
    assert cfg.loss.name == "mse" and cfg.optimizer.kwargs["lr"] == 0.01
    assert cfg.epochs == 1 and cfg.steps is None and cfg.mode == "epochs"
    assert cfg.metrics == ["loss"] and cfg.batch == TrainConfig().batch
    sched = section('    schedule = multistep([3, 6], 0.5)\n').schedule
    assert sched.kwargs == {"milestones": [3, 6], "gamma": 0.5, "warmup": 0}
    assert section('    schedule = step(every=2, warmup=5)\n').schedule.kwargs == {"every": 2, "gamma": 0.1,
                                                                                  "warmup": 5}


def _error(body: str, **kw) -> NndslConfigError:
    with pytest.raises(NndslConfigError) as info:
        section(body, **kw)
    return info.value


@pytest.mark.parametrize("body,needle,message,hint", [
    ("    optimiser = adam()\n", "optimiser", "unknown train setting 'optimiser'", "did you mean 'optimizer'?"),
    ("    optimizer = adamm(lr=1e-3)\n", "adamm", "unknown optimizer 'adamm'", "did you mean 'adam'"),
    ("    optimizer = adam(lrr=1e-3)\n", "lrr", "adam() has no argument 'lrr'", "did you mean 'lr'?"),
    ("    loss = cross_entropyy\n", "cross_entropyy", "unknown loss 'cross_entropyy'", "did you mean 'cross_entropy'"),
    ("    schedule = cosin()\n", "cosin", "unknown schedule 'cosin'", "did you mean 'cosine'"),
    ("    metrics = [f1, acuracy]\n", "acuracy", "unknown metric 'acuracy'", "did you mean 'accuracy'"),
    ('    data = mnits("d")\n', "mnits", "unknown dataset 'mnits'", "did you mean 'mnist'"),
    ('    data = mnist("d", split="tset")\n', '"tset"', '"tset" is not one of train, test', "did you mean 'test'"),
    ('    epochs = "ten"\n', '"ten"', 'epochs: expected an integer, got the string "ten"', None),
    ("    batch = 0\n", "0", "batch: expected a value > 0", None),
    ("    batch = 2.5\n", "2.5", "batch: expected an integer", None),
    ("    clip = true\n", "true", "clip: expected a number, got true", None),
    ("    data = text(\"f\", context=ctxx)\n", "ctxx", "expected an integer, got the name 'ctxx'",
     "did you mean 'ctx'?"),
    ("    optimizer = adam(lr=1e-3 * widht)\n", "widht", "expected a number", "did you mean 'width'?"),
    ("    optimizer = sgd(nesterov=true)\n", "sgd", "nesterov=true) needs momentum > 0", None),
    ("    schedule = step(gamma=0.5)\n", "step", "step() needs the argument 'every'", None),
    ("    data = mnist(split=test)\n", "test", "expected a string", 'quote it: "test"'),
    ("    optimizer = adam(1e-3, [0.9, 0.99], 1e-8, 0.0, 5)\n", "adam", "at most 4 positional", None),
    ("    seed = 1\n    seed = 2\n", "seed = 2", "'seed' is set twice", None),
])
def test_errors_are_located(body, needle, message, hint):
    err = _error(body)
    assert message in err.message, f"expected {message!r} in {err.message!r}"
    if hint is not None:
        assert err.hint is not None and hint in err.hint, f"expected hint {hint!r}, got {err.hint!r}"
    assert err.span is not None, "no location"
    line = source_line(body, needle)
    assert err.span.line == line, f"error at line {err.span.line}, expected {line}"
    text = err.span.source_line()
    assert text[err.span.col - 1:].startswith(needle), f"caret at {text[err.span.col - 1:]!r}, expected {needle!r}"
    assert str(err).startswith(f"t.nn:{line}:{err.span.col}: config error:")


def test_epochs_and_steps_exclusive():
    err = _error("    epochs = 2\n    steps = 10\n")
    assert "either epochs or steps" in err.message


def test_overrides_apply_after_the_file_and_are_checked():
    body = "    optimizer = adam(lr=1e-3)\n    steps = 100\n    batch = 8\n"
    cfg = section(body, overrides={"epochs": 3, "lr": 0.5, "batch": 16, "device": "cpu"})
    assert (cfg.epochs, cfg.steps, cfg.mode, cfg.batch, cfg.lr, cfg.device) == (3, None, "epochs", 16, 0.5, "cpu")
    cfg = section("    epochs = 4\n", overrides={"steps": 7, "clip": 2, "eval_batches": 3})
    assert (cfg.steps, cfg.epochs, cfg.clip, cfg.eval_batches) == (7, None, 2.0, 3)
    for bad, match in [({"epochs": -1}, "--epochs: expected a value > 0"), ({"lr": "fast"}, "--lr: expected a number"),
                       ({"device": "tpu"}, '"tpu" is not one of auto, cpu, cuda'),
                       ({"batchsize": 4}, "'batchsize' cannot be set"), ({"metrics": "f1"}, "cannot be set")]:
        with pytest.raises(NndslConfigError, match=match):
            section(body, overrides=bad)
    with pytest.raises(NndslConfigError) as info:
        section(body, overrides={"batchsize": 4})
    assert "did you mean 'batch'" in info.value.hint


def test_every_key_is_documented_on_the_dataclass():
    fields = TrainConfig.__dataclass_fields__
    assert set(KEYS) <= set(fields), set(KEYS) - set(fields)
