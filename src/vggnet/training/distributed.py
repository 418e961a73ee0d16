"""The little the training loop needs to know about torchrun: which process it is, and how to agree.

    torchrun --nproc-per-node 2 -m vggnet train --data DIR      # or: vggnet train --nproc 2 --data DIR

torchrun starts the processes and sets RANK, LOCAL_RANK and WORLD_SIZE; `Distributed.from_environment` joins
the process group (gloo on the CPU, nccl on CUDA, one GPU per process). Without torchrun it is a single process
and every operation here is a no-op, so single-process and distributed training run the same code.
(`--nproc N` starts N processes as torchrun would: `launcher.py`.)

Waiting. A collective fails when a process waits longer than TIMEOUT for the others: how a hung job ends. Preparing
the data is the exception: the main process finds the data while the others wait, then each checks its share of
the images, and on ImageNet's 1.28 million files either can take longer than any fixed timeout a training step
would want. Those steps (`patient=True`) go through a second process group, on gloo (object collectives travel as
CPU pickles under nccl too), whose PATIENT_TIMEOUT no dataset reaches. A process that dies still ends the job at
once: torchrun stops every process when one fails; the long wait only spares the living ones.
"""

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist

from ..runtime import resolve_device

# How long a collective waits for a missing process before failing (torchrun stops the others sooner when one dies).
TIMEOUT = timedelta(minutes=10)
# How long a data-preparation step may keep the processes waiting: longer than finding and checking any dataset
# takes, and only the guard against a process that hangs alive (see the module docstring).
PATIENT_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1  # the processes on this machine, which share its cores
    # The gloo group of the waits that may take long (`patient=True`); None in one process.
    patient_group: dist.ProcessGroup | None = field(default=None, repr=False, compare=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: str) -> tuple["Distributed", torch.device]:
        """Join torchrun's process group if there is one; return the context and this process's device."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        torch_device = resolve_device(device)
        if world_size == 1:
            return cls(), torch_device
        rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
        if torch_device.type == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ValueError(
                    f"process {local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); start at most "
                    f"that many processes per machine (--nproc-per-node)"
                )
            torch.cuda.set_device(local_rank)
            torch_device = torch.device("cuda", local_rank)
        if not dist.is_initialized():
            backend = "nccl" if torch_device.type == "cuda" else "gloo"
            dist.init_process_group(backend, timeout=TIMEOUT, device_id=torch_device if backend == "nccl" else None)
        patient_group = dist.new_group(backend="gloo", timeout=PATIENT_TIMEOUT)
        local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return cls(rank, world_size, local_rank, local_world_size, patient_group), torch_device

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over all processes (in place, and returned)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every process the main process's buffers (BatchNorm running statistics). DDP does so before each
        training step, so after the last one each process still holds its own; evaluation and the saved model
        must use the same."""
        if self.enabled:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process if `flag` is true on any: how the processes agree to stop together."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        return bool(self.all_reduce_sum(value).item() > 0)

    def gather(self, value, patient: bool = False) -> list:
        """Every process's `value` (any picklable object), in rank order, on every process.

        Args:
            patient: Wait for the others up to PATIENT_TIMEOUT rather than TIMEOUT (see the module docstring).
        """
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value, group=self._group(patient))
        return values

    def share(self, compute, patient: bool = False):
        """Run `compute()` on the main process and give every process its result; an exception raised there is
        raised on every process, so that none waits for a result that never comes.

        Args:
            patient: The others wait for the result up to PATIENT_TIMEOUT rather than TIMEOUT: for a `compute` whose
                time grows with the dataset (see the module docstring).
        """
        if not self.enabled:
            return compute()
        box = [None]
        if self.is_main:
            try:
                box[0] = ("ok", compute())
            except Exception as error:  # handed to the other processes, then raised everywhere
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0, group=self._group(patient))
        status, value = box[0]
        if status == "error":
            raise value
        return value

    def _group(self, patient: bool):
        """The process group of a collective: the patient one, or torch's default (None)."""
        return self.patient_group if patient else None
