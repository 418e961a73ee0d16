"""The little the training loop needs to know about torchrun: which process it is, and how to agree.

    torchrun --nproc-per-node 2 -m vggnet train --data DIR      # or: vggnet train --nproc 2 --data DIR

torchrun starts the processes and sets RANK, LOCAL_RANK and WORLD_SIZE; `Distributed.from_environment` joins
the process group (gloo on the CPU, nccl on CUDA, one GPU per process). Without torchrun it is a single process
and every operation here is a no-op, so single-process and distributed training run the same code.
`launch_torchrun` is what `--nproc N` does: start the same command under torchrun.
"""

import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..runtime import resolve_device

# How long a collective waits for a missing process before failing (torchrun stops the others sooner when one dies).
TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

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
        return cls(rank, world_size, local_rank), torch_device

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

    def gather(self, value) -> list:
        """Every process's `value` (any picklable object), in rank order, on every process."""
        if not self.enabled:
            return [value]
        values = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def share(self, compute):
        """Run `compute()` on the main process and give every process its result; an exception raised there is
        raised on every process, so that none waits for a result that never comes."""
        if not self.enabled:
            return compute()
        box = [None]
        if self.is_main:
            try:
                box[0] = ("ok", compute())
            except Exception as error:  # handed to the other processes, then raised everywhere
                box[0] = ("error", error)
        dist.broadcast_object_list(box, src=0)
        status, value = box[0]
        if status == "error":
            raise value
        return value


def launch_torchrun(processes: int, argv: list[str]) -> int:
    """Run `vggnet *argv` in `processes` processes on this machine through torchrun; return its exit code.

    `--nproc N` (or `--nproc=N`), the flag that asks for this, is dropped from what each process runs.
    """
    forwarded, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            forwarded.append(argument)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
        "-m", "vggnet", *forwarded,
    ]  # fmt: skip
    print("running: torchrun " + " ".join(command[3:]), file=sys.stderr)
    return subprocess.run(command, check=False).returncode
