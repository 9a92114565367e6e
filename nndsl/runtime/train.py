"""The training loop: ``fit(model, cfg, out_dir, ...)`` trains and evaluates per a ``TrainConfig``.

When it evaluates, on how much of the evaluation set, and what the metrics are called
(``val_accuracy``, ``train_loss``) is ``evaluation.py``'s job. The learning rate is set before every optimizer step from the schedule, so
the schedule's only state is the step count, and a run resumed from a checkpoint (weights,
optimizer, step, history, RNG states, sampler state, running loss, fp16 loss scale) continues exactly where it
stopped: its weights and loss history are bit-identical to an uninterrupted run's. When and what
``fit`` checkpoints is ``saver.py``'s job; the run folder and its lock are ``rundir.py``'s.

A nan/inf loss is caught at the step it happens without a host sync per step (``LossWatch`` keeps
the first bad step on the device; it is read every few steps, at evaluations and before a
checkpoint); the run stops there and keeps its last good checkpoint.

Weight decay and the l1/l2 penalties apply to weight matrices and kernels only (parameters of rank
>= 2), never to biases or normalization parameters (as nanoGPT does for weight decay).
"""
from __future__ import annotations

import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from tqdm import tqdm

from ..errors import NndslConfigError, NndslDataError, NndslError
from ..objective import training_objective
from . import checkpoint as ckpt
from . import data
from .config import Spec, TrainConfig
from .accumulate import micro_batches
from .distributed import Cluster
from .early_stop import EarlyStop
from .losses import make_loss
from .evaluation import TRAIN_LOSS, eval_interval, evaluate, metrics_without_eval
from .feed import Feed, first as _first, forward as _forward, to_device as _to
from .metrics import fmt
from .precision import Precision
from .progress import Interval, LossWatch, describe_nonfinite
from .records import save_records
from .rundir import METRICS, RUN, RunDir, save_json
from .saver import Saver, claim
from .tracking import Tracker

_CHECK_EVERY = 25  # steps between reads of the device-side nan/inf flag (and progress-bar updates)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(device: Optional[str]) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise NndslConfigError(f"device '{device}' asked for, but CUDA is not available here",
                               hint="use --device cpu (or auto)")
    return torch.device(device)


def build_optimizer(model: torch.nn.Module, spec: Spec) -> torch.optim.Optimizer:
    """``spec`` as a torch optimizer; weight decay only on parameters of rank >= 2."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise NndslConfigError("the model has no trainable parameters", spec.span)
    k = dict(spec.kwargs)
    decay = k.pop("weight_decay", 0.0)
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=k["lr"], momentum=k["momentum"], nesterov=k["nesterov"])
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}[spec.name]
    if len(k["betas"]) != 2:
        raise NndslConfigError(f"{spec.name}(): betas must be two numbers, got {k['betas']}", spec.span)
    return cls(groups, lr=k["lr"], betas=tuple(k["betas"]), eps=k["eps"])


class Schedule:
    """The learning rate at each optimizer step. ``step``/``multistep`` count epochs in epoch mode and
    steps in step mode; ``cosine`` decays over the whole run; ``warmup`` is in steps (all schedules)."""

    def __init__(self, spec: Spec, base_lr: float, total: int, per_epoch: int, step_mode: bool):
        self.spec, self.base, self.total, self.per_epoch, self.step_mode = spec, base_lr, total, per_epoch, step_mode

    def __call__(self, step: int) -> float:
        k, name = self.spec.kwargs, self.spec.name
        warm = k.get("warmup", 0)
        ramp = (step + 1) / (warm + 1) if step < warm else 1.0
        if name == "cosine":
            if step < warm:
                return self.base * ramp
            progress = min(1.0, (step - warm) / max(1, self.total - warm))
            return k["min_lr"] + (self.base - k["min_lr"]) * 0.5 * (1.0 + math.cos(math.pi * progress))
        unit = step if self.step_mode else step // self.per_epoch
        if name == "step":
            factor = k["gamma"] ** (unit // k["every"])
        elif name == "multistep":
            factor = k["gamma"] ** sum(unit >= m for m in k["milestones"])
        else:
            factor = 1.0
        return self.base * factor * ramp


def _penalty(weights: list[torch.Tensor], l1: float, l2: float) -> torch.Tensor:
    total = 0.0
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    return total


def fit(model: torch.nn.Module, cfg: TrainConfig, out_dir: Union[None, Path, RunDir] = None, *,
        device: Optional[str] = None, resume: bool = False, overwrite: bool = False, output_is_probs: bool = False,
        progress: bool = True, model_meta: Optional[dict] = None, backend: Optional[str] = None,
        log: Callable[[str], None] = tqdm.write, final_whole: bool = True, shard: bool = False) -> dict[str, Any]:
    """Train ``model`` per ``cfg``; write checkpoints and metrics under ``out_dir`` (None: write nothing).

    ``out_dir``: a folder, or a ``RunDir`` the caller opened (and locked) already.
    ``device``: "cpu" | "cuda" | "auto" (default: ``cfg.device``). ``resume``: continue from the
    newest good checkpoint in ``out_dir``; ``overwrite``: start afresh in a folder holding another run.
    ``output_is_probs``: the model ends in softmax/sigmoid.
    ``model_meta`` goes into ``out_dir/run.json`` (``nndsl.load`` rebuilds the model from it), with
    ``backend`` (the ``--backend`` the model was compiled for; the weights load into any backend).
    ``final_whole``: the final evaluation covers the whole evaluation set, even with ``eval_batches``
    (False: ``eval_batches`` there too, for the slow Triton interpreter).
    Under ``torchrun`` the run spans its processes (DDP; FSDP2 with ``shard``; ``distributed.py``):
    rank 0 alone logs and writes ``out_dir``.
    Returns ``{"final": {"train_loss": ..., "val_<metric>": ...}, "history": [...], "samples_per_second": ...,
    "seconds": ...}``.
    """
    if cfg.data is None:
        raise NndslConfigError("the train section has no `data = ...`: nothing to train on",
                               hint='e.g. data = mnist("data/mnist", split="train")')
    if resume and out_dir is None:
        raise NndslConfigError("--resume needs the run folder (--out)")
    cluster = Cluster.start(resolve_device(device or cfg.device), shard)  # torchrun's process group, if any
    if not cluster.main:
        log, progress = (lambda line: None), False
    run = RunDir.open(out_dir) if out_dir is not None and not isinstance(out_dir, RunDir) else out_dir
    try:
        if run is not None and run.writer:
            if run.removed:
                log(f"removed {len(run.removed)} leftovers of an interrupted run in {run.path}")
            claim(run.path, resume=resume, overwrite=overwrite, log=log)
        meta = dict(model_meta or {}, **({"backend": backend} if backend is not None else {}))
        return _fit(model, cfg, run, device=device, resume=resume, output_is_probs=output_is_probs,
                    progress=progress, model_meta=meta, log=log, final_whole=final_whole, cluster=cluster)
    finally:
        if run is not None and run is not out_dir:
            run.close()
        cluster.close()


def _fit(model, cfg: TrainConfig, run: Optional[RunDir], *, device, resume, output_is_probs, progress,
         model_meta, log, final_whole, cluster: Cluster) -> dict[str, Any]:
    read_dir = run.path if run is not None else None  # where --resume reads (every process)
    out_dir = read_dir if run is not None and run.writer else None  # where this process writes (rank 0)
    dev = cluster.device(resolve_device(device or cfg.device))
    seed_everything(cfg.seed + cluster.rank)  # rank 0 as one process; other ranks draw other dropout masks
    cluster.check_batch(cfg.batch, cfg.spans.get("batch"))
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    # data: loaded into memory, indexed a batch at a time
    train_src = data.load(cfg.data, cfg.base_dir)
    eval_src = data.load(cfg.eval, cfg.base_dir) if cfg.eval is not None else None
    log(f"data: {train_src.describe()}" + (f"; eval: {eval_src.describe()}" if eval_src is not None else ""))
    warning = metrics_without_eval(cfg)
    if warning:
        log(warning)
    data.check_fits(model, train_src, cfg, "data")
    if eval_src is not None:
        data.check_fits(model, eval_src, cfg, "eval")
    # model, loss, optimizer, schedule
    model.to(dev).train()
    amp = Precision(cfg.precision, dev, cfg.spans.get("precision"))  # autocast, fp16 loss scaling
    objective = training_objective(model, cfg.loss)  # the compiled model + loss, fused
    loss_fn = amp.loss(make_loss(cfg.loss, output_is_probs)) if cfg.loss.name != "expression" else None
    if objective is None and loss_fn is None:
        raise NndslConfigError("a loss written as an expression trains a model compiled from the same file",
                               cfg.spans.get("loss"))
    feed = Feed(model, train_src, cfg, "data")

    def step_loss(batch: dict, first: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(the loss, the loss + the l1/l2 penalties): the forward DDP or FSDP2 wraps."""
        loss = _loss(model, loss_fn, feed, batch, first=first, source=train_src, cfg=cfg, objective=objective)
        if not (cfg.l1 or cfg.l2):
            return loss, loss
        weights = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]  # l1 / l2 apply to these
        return loss, loss + _penalty(weights, cfg.l1, cfg.l2)
    stepper = cluster.wrap(model, step_loss)  # DDP / FSDP2 under torchrun
    opt = build_optimizer(model, cfg.optimizer)  # after wrap: FSDP2 shards the parameters
    step_mode = cfg.mode == "steps"
    per_epoch = data.batches_per_epoch(len(train_src), cfg.batch)
    total = cfg.steps if step_mode else cfg.epochs * per_epoch
    schedule = Schedule(cfg.schedule, cfg.lr, total, per_epoch, step_mode)
    eval_every = eval_interval(cfg, total, per_epoch, len(eval_src) if eval_src is not None else None)
    saver = Saver(out_dir, cfg, every=cfg.checkpoint_every * (1 if step_mode else per_epoch)
                  if cfg.checkpoint_every else eval_every, has_eval=eval_src is not None, log=log,
                  agree=cluster.agree if cluster.enabled else None)
    stopper = EarlyStop(cfg, has_eval=eval_src is not None)
    sampler = torch.Generator().manual_seed(cfg.seed)  # random text windows in step mode (the same on every rank)
    spare = train_src[torch.zeros(1, dtype=torch.long)]  # stands in for an empty micro-batch (accumulate.py)
    parts = min(cfg.accumulate, cfg.batch // cluster.world)  # micro-batches per step, the same on every rank
    watch = LossWatch(dev)

    st: dict[str, Any] = {"step": 0, "history": [], "train_seconds": 0.0, "seconds": 0.0, "samples": 0,
                          "final": {}}
    interval = None
    if resume:
        found, w, saved = ckpt.newest(read_dir, log=log)
        try:
            cluster.load(model, opt, w, saved["optimizer"])
            sampler.set_state(saved["sampler"])
            amp.load_state_dict(saved.get("scaler"))
            interval = Interval(dev, cluster.own(saved, "interval"))
        except (RuntimeError, ValueError, KeyError, TypeError) as e:
            raise NndslDataError(f"the checkpoint {found.path} does not fit this model or optimizer: "
                                 f"{str(e).strip().splitlines()[0]}",
                                 hint="resume with the same model, hyperparameters and optimizer") from None
        ckpt.set_rng_state(cluster.own(saved, "rng", saved["rng"]))
        stopper.load(saved.get("early_stop"))
        st.update({k: saved[k] for k in st})
        saver.best_value, saver.last_saved = saved.get("best_value"), found.step
        log(f"resuming from {found.path} (step {found.step})")
    if out_dir is not None:
        meta = dict(model_meta or {})
        meta.update(train=cfg.as_dict(), output_is_probs=output_is_probs, data=data.record(train_src, feed.inputs),
                    world_size=cluster.world)
        if isinstance(train_src, data.TextSource):
            meta["vocab"] = train_src.vocab
        save_json(out_dir / RUN, meta)
        save_records(out_dir, cfg, meta)  # config.json, train.nn, source.nn
    clock0, seconds0 = time.perf_counter(), st["seconds"]

    def results() -> dict[str, Any]:
        rate = st["samples"] / st["train_seconds"] if st["train_seconds"] > 0 else 0.0
        return {"final": st["final"], "history": st["history"], "samples_per_second": rate,
                "seconds": st["seconds"]}

    def check_finite(step: int) -> None:
        """Stop with a clear message if a loss or a weight became nan/inf (one host sync)."""
        bad = watch.first_bad()
        if bad is not None:
            raise NndslConfigError(f"the loss became {describe_nonfinite(bad[1])} at step {bad[0]}; "
                                   f"{saver.where()}", cfg.spans.get("optimizer"),
                                   f"lower the learning rate (now {schedule(bad[0] - 1):g}) or set clip = 1.0 "
                                   "(the data were checked finite when loaded)")
        name = ckpt.nonfinite(model.state_dict())
        if name is not None:
            raise NndslConfigError(f"the weight '{name}' became nan or inf by step {step}; {saver.where()}",
                                   cfg.spans.get("optimizer"), "lower the learning rate or set clip = 1.0")

    def save(step: int, periodic: bool = True, best: bool = False) -> None:
        st["seconds"] = seconds0 + time.perf_counter() - clock0
        if read_dir is None:
            return
        weights, optim = cluster.full_state(model, opt)  # FSDP2: gathered from every rank
        ranks = cluster.gather({"rng": ckpt.rng_state(), "interval": iv.state()})  # each rank's, on rank 0
        if out_dir is None:
            return
        check_finite(step)
        saver.save(step, weights, {"optimizer": optim, "sampler": sampler.get_state(), "rng": ckpt.rng_state(),
                                   "interval": iv.state(), "scaler": amp.state_dict(), "early_stop": stopper.state(),
                                   **({"ranks": ranks} if ranks else {}), **st}, periodic=periodic, best=best)

    def record(step: int, lr: float) -> tuple[bool, Optional[str]]:
        """Evaluate, append to the history, print one line, rewrite metrics.json; (a new best?, why
        the run stops early or None), rank 0's on every rank."""
        check_finite(step)
        st["train_seconds"] += iv.stop()
        cluster.sum_interval(iv)  # the running loss over every rank's examples
        st["samples"] += iv.n
        st["final"] = {TRAIN_LOSS: iv.mean()}
        if eval_src is not None:  # the final evaluation covers the whole set, intermediate ones eval_batches
            limit = None if step == total and final_whole else cfg.eval_batches
            with cluster.gathered():  # every rank evaluates the whole set
                st["final"].update(evaluate(model, eval_src, cfg, loss_fn, output_is_probs, dev, objective,
                                            limit=limit, progress=progress))
        entry: dict[str, Any] = {"step": step, "epoch": step / per_epoch, "lr": lr, **st["final"],
                                 "samples_per_second": iv.rate()}
        st["history"].append(entry)
        where = f"step {step}/{total}" if step_mode else f"epoch {step // per_epoch}/{cfg.epochs}"
        shown = "  ".join(f"{k} {fmt(v)}" for k, v in st["final"].items())
        log(f"{where}  {shown}  ({iv.rate():,.0f} samples/s)")
        st["seconds"] = seconds0 + time.perf_counter() - clock0
        if out_dir is not None:
            save_json(out_dir / METRICS, results(), "metrics")
        tracker.log(entry)  # log.csv and TensorBoard (rank 0: the others have no out_dir)
        return cluster.agree((saver.improved(entry), stopper.update(entry)))

    start = st["step"]
    tracker = Tracker(out_dir, start=start, history=st["history"], config=cfg.as_dict())
    if start >= total or stopper.stopped:
        log(f"already trained to step {start} of {total}{' (stopped early)' * stopper.stopped}; nothing to do")
    batches = data.train_batches(train_src, cfg.batch, seed=cfg.seed, start=start, step_mode=step_mode,
                                 generator=sampler, workers=cfg.workers, pin=dev.type == "cuda",
                                 rank=cluster.rank, world=cluster.world)  # this process's slice of each batch
    iv, bar, step = interval or Interval(dev), None, start
    try:
        while step < total and not stopper.stopped:
            if bar is None:  # one bar per epoch (epoch mode) or for the whole run (step mode)
                bar = tqdm(total=total if step_mode else per_epoch, initial=step if step_mode else step % per_epoch,
                           desc="train" if step_mode else f"epoch {step // per_epoch + 1}/{cfg.epochs}",
                           disable=not progress, leave=False, dynamic_ncols=True, unit="step")
            batch = next(batches)
            lr = schedule(step)
            for g in opt.param_groups:
                g["lr"] = lr
            opt.zero_grad(set_to_none=True)
            # `accumulate` micro-batches, each loss weighted by its share of the global batch
            micro_parts = micro_batches(batch, parts, data.global_batch(train_src, cfg.batch, step, step_mode),
                                        cluster.world, spare)
            for i, (micro, n, weight) in enumerate(micro_parts):
                with cluster.syncing(last=i == parts - 1):  # gradients averaged between ranks once a step
                    with amp.autocast():  # the forward in the run's precision (the loss in fp32: amp.loss / the objective)
                        loss, total_loss = stepper(_to(micro, dev), first=step == start and i == 0)
                    amp.backward(total_loss * weight)
                watch.update(loss, step + 1)
                iv.add(loss, n)
            if cfg.clip:
                amp.unscale(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            amp.step(opt)
            step += 1
            st["step"] = step
            bar.update(1)
            if step % _CHECK_EVERY == 0:
                check_finite(step)
                if progress:
                    bar.set_postfix_str(f"{TRAIN_LOSS} {iv.mean():.4f}  lr {lr:.2e}  {iv.rate():,.0f} samples/s",
                                        refresh=False)
            improved, stop = False, None
            if step % eval_every == 0 or step == total:
                if not step_mode:
                    bar.close()
                    bar = None
                improved, stop = record(step, lr)
                iv = Interval(dev)
                if stop:
                    log(stop)
            periodic = step == total or stop is not None or saver.due(step)
            if periodic or improved:
                save(step, periodic=periodic, best=improved)
            if stop:
                stopper.stopped = True
    except KeyboardInterrupt:  # (under torchrun every rank is interrupted at its own point: no collective save)
        if out_dir is not None and not cluster.enabled and st["step"] != saver.last_saved:
            save(st["step"])
            log(f"interrupted at step {st['step']}; checkpoint saved in {out_dir} (continue with --resume)")
        raise
    finally:
        if bar is not None:
            bar.close()
        tracker.close()
    if not st["final"] and eval_src is not None:
        with cluster.gathered():
            st["final"] = evaluate(model, eval_src, cfg, loss_fn, output_is_probs, dev, objective, progress=progress)
    st["seconds"] = seconds0 + time.perf_counter() - clock0
    out = results()
    if out_dir is not None:
        save_json(out_dir / METRICS, out, "metrics")
    return out


def _loss(model, loss_fn, feed: Feed, batch: dict, *, first: bool, source: data.Source, cfg: TrainConfig,
          objective: Optional[Callable] = None) -> torch.Tensor:
    """The training loss: through the model's compiled ``objective`` (the train section's loss built
    into the model's graph) when it has one for this loss, else forward and ``loss_fn``. The first
    step turns a data/model mismatch into a located data error."""
    x = feed.inputs_of(batch)
    if objective is not None:
        try:
            return objective(*x, *feed.targets_of(batch))
        except (ValueError, TypeError) as e:  # the compiled objective's input checks
            if not first:
                raise
            raise NndslDataError(f"the training data do not fit the model: {e}", cfg.spans.get("data")) from None
    y = batch["y"]
    if not first:
        return loss_fn(_first(_forward(model, x)), y)
    try:
        pred = _first(_forward(model, x))
    except (ValueError, TypeError) as e:  # the compiled forward's input check
        raise NndslDataError(f"the training data do not fit the model: {e}", cfg.spans.get("data")) from None
    data.check_targets(pred, source, cfg, "data")
    try:
        return loss_fn(pred, y)
    except NndslError as e:
        e.span = e.span or cfg.spans.get("loss")
        raise
