"""Many processes: ``nndsl run`` under ``torchrun`` trains with PyTorch's own DistributedDataParallel,
or FSDP2 (``fully_shard``) with ``--shard``.

``torchrun`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``; ``Cluster.start`` joins the process
group from them (nccl on CUDA, each process on GPU ``LOCAL_RANK``; gloo on the CPU). Without them
(or with one process) everything here is a no-op and ``fit`` runs exactly as it always did.

How a run divides its work (``fit`` calls these at a few points):

* **Data**: every rank draws the same global batch (the file's ``batch``: the same shuffled
  permutation, the same random text windows from one generator) and keeps its own contiguous
  slice (``batch / world_size`` examples), so ranks never see each other's examples or windows and
  the run is the single-process run with its batches split (``data.sources``).
* **Gradients**: the training loss runs as the forward of a ``LossModule`` that DDP (or FSDP2)
  wraps; each rank's loss is weighted by its share of the global batch (``accumulate.py``), so the
  averaged gradient is the global batch's even when the last batch of an epoch splits unevenly.
* **Evaluation**: every rank evaluates the whole evaluation set (FSDP2 needs every rank in each
  forward; it also makes the best-checkpoint and early-stop decisions the same everywhere, and
  rank 0's decisions are broadcast besides, so no rank can wait on a save the others skip).
* **Writing**: rank 0 alone logs, locks and writes the run folder; saving is collective (FSDP2
  gathers the full weights and optimizer state, and each rank's RNG and running loss go into the
  checkpoint), and ``--resume`` loads the same checkpoint on every rank.
* **FSDP2** shards the whole model as one unit at the loss module (the generated forward reads
  every parameter itself, so finer units would not be gathered before use): parameters,
  gradients and optimizer state are sharded between steps, the full weights gathered per forward.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Callable, ContextManager, Optional

import torch
import torch.distributed as dist

from ..errors import NndslConfigError, Span


def env_rank() -> int:
    """This process's rank as ``torchrun`` sets it (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def silence_other_ranks() -> None:
    """Under torchrun, only rank 0 prints (errors still reach stderr from every rank)."""
    if env_rank() != 0:
        sys.stdout = open(os.devnull, "w")


class LossModule(torch.nn.Module):
    """The training loss as a module's forward, so the wrapper (DDP, FSDP2) sees the forward it wraps."""

    def __init__(self, model: torch.nn.Module, loss: Callable[..., Any]):
        super().__init__()
        self.model = model
        self.__dict__["_loss"] = loss  # a plain function, not a submodule

    def forward(self, batch: dict, first: bool = False) -> Any:
        return self._loss(batch, first)


class Cluster:
    """One process's place in a run: its rank among ``world`` processes and how its model is wrapped."""

    def __init__(self, world: int = 1, rank: int = 0, local_rank: int = 0, shard: bool = False):
        self.world, self.rank, self.local_rank, self.shard = world, rank, local_rank, shard
        self.wrapped: Optional[torch.nn.Module] = None
        self.owned = False  # this process group was started here (and is ended here)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def start(cls, dev: torch.device, shard: bool = False) -> "Cluster":
        """Join torchrun's process group (when there is one); a single process is ``Cluster()``."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            if shard:
                raise NndslConfigError("--shard shards the model between processes: start the run with "
                                       "torchrun --nproc-per-node N (N > 1)")
            return cls()
        c = cls(world, env_rank(), int(os.environ.get("LOCAL_RANK", "0")), shard)
        if not dist.is_initialized():
            if dev.type == "cuda":
                torch.cuda.set_device(c.local_rank)
            dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
            c.owned = True
        return c

    def device(self, dev: torch.device) -> torch.device:
        """Each process on its own GPU (``LOCAL_RANK``)."""
        return torch.device("cuda", self.local_rank) if self.enabled and dev.type == "cuda" else dev

    def check_batch(self, batch: int, span: Optional[Span]) -> None:
        if batch % self.world:
            raise NndslConfigError(f"batch = {batch} cannot be split evenly between {self.world} processes: "
                                   "the file's batch is the global batch", span,
                                   f"use a multiple of {self.world}, e.g. batch = {max(1, batch // self.world) * self.world}")

    def close(self) -> None:
        """Leave the process group together: a barrier first, so no process tears its connections
        down while another still talks to it (gloo aborts the process that sees that)."""
        if self.owned and dist.is_initialized():
            try:
                dist.barrier()
            except Exception:  # a peer already failed: its own error is the one to report
                pass
            dist.destroy_process_group()
            self.owned = False

    # ------------------------------------------------------------------------- the wrapped loss
    def wrap(self, model: torch.nn.Module, loss: Callable[..., Any]) -> torch.nn.Module:
        """``loss(batch, first)`` as a module; under torchrun wrapped in DDP or sharded by FSDP2
        (build the optimizer after this: FSDP2 replaces the parameters by sharded ones)."""
        step = LossModule(model, loss)
        if not self.enabled:
            return step
        if self.shard:
            from torch.distributed.device_mesh import init_device_mesh
            from torch.distributed.fsdp import fully_shard

            dev = next(model.parameters()).device
            self.wrapped = fully_shard(step, mesh=init_device_mesh(dev.type, (self.world,)))
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            dev = next(model.parameters()).device
            self.wrapped = DDP(step, device_ids=[dev.index] if dev.type == "cuda" else None)
        return self.wrapped

    def syncing(self, last: bool) -> ContextManager:
        """Around one micro-batch's forward and backward: gradients are averaged between the
        processes on the ``last`` micro-batch of a step only (DDP ``no_sync``; FSDP2's switch)."""
        if not self.enabled or last:
            if self.shard and self.enabled:
                self.wrapped.set_requires_gradient_sync(True)
            return contextlib.nullcontext()
        if self.shard:
            self.wrapped.set_requires_gradient_sync(False)
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def gathered(self) -> ContextManager:
        """The full weights in place (FSDP2: unsharded) while the model is called directly (evaluation)."""
        if not (self.enabled and self.shard):
            return contextlib.nullcontext()

        @contextlib.contextmanager
        def unsharded():
            self.wrapped.unshard()
            try:
                yield
            finally:
                self.wrapped.reshard()
        return unsharded()

    # ------------------------------------------------------------------------- agreeing and summing
    def agree(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (decisions to save or stop must be the same everywhere)."""
        if not self.enabled:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_interval(self, iv) -> None:
        """The running training loss and sample count of a ``progress.Interval``, summed over ranks."""
        if not self.enabled:
            return
        t = torch.stack([iv.loss.detach().to(torch.float64), torch.tensor(float(iv.n), dtype=torch.float64,
                                                                           device=iv.loss.device)])
        dist.all_reduce(t)
        iv.loss.copy_(t[0])
        iv.n = int(round(t[1].item()))

    def gather(self, obj: Any) -> Optional[list]:
        """Every rank's ``obj`` on rank 0 (None elsewhere, and for a single process)."""
        if not self.enabled:
            return None
        out = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def own(self, saved: dict, key: str, others: Any = None) -> Any:
        """This rank's ``key`` of a checkpoint's state: its own where the run that saved it had as
        many ranks (``gather``), else the state's (rank 0's) for rank 0 and ``others`` elsewhere."""
        per_rank = saved.get("ranks")
        if per_rank is not None and len(per_rank) == self.world:
            return per_rank[self.rank][key]
        return saved.get(key) if self.main else others

    # ------------------------------------------------------------------------- whole states
    def full_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
        """(weights, optimizer state) of the whole model, as a single process holds them (FSDP2:
        gathered from the shards, a collective every rank calls)."""
        weights, state = model.state_dict(), opt.state_dict()
        if not (self.enabled and self.shard):
            return weights, state
        state = dict(state, state={i: {k: _full(v) for k, v in s.items()} for i, s in state["state"].items()})
        return {k: _full(v) for k, v in weights.items()}, state

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer, weights: dict, state: dict) -> None:
        """Load a checkpoint's whole weights and optimizer state (FSDP2: each rank keeps its shards)."""
        if not (self.enabled and self.shard):
            model.load_state_dict(weights)
            opt.load_state_dict(state)
            return
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
        from torch.distributed.tensor import DTensor, distribute_tensor

        unknown = set(weights) - set(model.state_dict())
        if unknown:
            raise RuntimeError(f"unexpected key(s) in state_dict: {', '.join(sorted(unknown))}")
        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=True))
        params = [p for g in opt.param_groups for p in g["params"]]

        def shard(i: int, v: Any) -> Any:
            p = params[int(i)]
            if isinstance(p, DTensor) and isinstance(v, torch.Tensor) and v.shape == p.shape:
                return distribute_tensor(v.to(p.device), p.device_mesh, p.placements)
            return v
        opt.load_state_dict(dict(state, state={i: {k: shard(i, v) for k, v in s.items()}
                                               for i, s in state["state"].items()}))


def _full(v: Any) -> Any:
    """A sharded tensor (DTensor) gathered whole, on the CPU; anything else as it is."""
    return v.full_tensor().cpu() if hasattr(v, "full_tensor") else v
