"""`vggnet train --nproc N`: N training processes on this machine, set up as `torchrun --standalone` sets up its own.

Each process gets what torchrun would give it (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and
MASTER_PORT, for `Distributed.from_environment`) and a share of the cores (OMP_NUM_THREADS, unless set; torchrun
sets 1). What differs is stopping. The terminal's Ctrl-C reaches every process of the job (one process group);
each stops at the next batch as a single process does, the first saving last.pt, and this one waits for them. A
SIGTERM sent to this process alone (a scheduler's, `kill`) is passed on to them. torchrun would also signal its
processes itself (a second Ctrl-C each, which means "stop at once"), then print its own traceback. Several machines
still take torchrun, as the README shows.
"""

import os
import signal
import socket
import subprocess
import sys
import time

from ..runtime import usable_cores
from .signals import INTERRUPTED

# How often the processes are looked at while they run; torchrun's agent looks every 0.1 s.
MONITOR_INTERVAL_S = 0.1
# How long the others have to end after a process fails, before they are killed: one waiting in a collective for
# the failed one would otherwise wait out the collective's timeout (distributed.TIMEOUT). torchrun's default too.
STOP_GRACE_S = 30


def launch_processes(processes: int, command: list[str]) -> int:
    """Run `command` (`python -m vggnet train ...`) in `processes` processes, wait for all of them, and return
    the job's exit code: 0, or the first failure's (a process killed by signal S gives 128 + S, as a shell does).

    A process that fails ends the job: the others are sent SIGTERM, and killed if they are still running
    STOP_GRACE_S later."""
    environment = _environment(processes)
    children = [
        subprocess.Popen(command, env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)})
        for rank in range(processes)
    ]

    def pass_on(signum, frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    previous = {
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),  # the processes have it too: they stop
        signal.SIGTERM: signal.signal(signal.SIGTERM, pass_on),
    }
    try:
        return _wait(children)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _environment(processes: int) -> dict[str, str]:
    with socket.socket() as probe:  # a free port for the main process's store, as torchrun --standalone finds one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "WORLD_SIZE": str(processes),
        "LOCAL_WORLD_SIZE": str(processes),
    }
    environment.setdefault("OMP_NUM_THREADS", str(max(1, usable_cores() // processes)))
    return environment


def _wait(children: list[subprocess.Popen]) -> int:
    failure, deadline = None, None
    while any(child.poll() is None for child in children):
        if failure is None:
            failure = next((child for child in children if child.returncode not in (None, 0)), None)
            # A process stopped by Ctrl-C or SIGTERM (INTERRUPTED): the others stop with it, unprompted.
            if failure is not None and failure.returncode != INTERRUPTED:
                for child in children:
                    if child.poll() is None:
                        child.terminate()
                deadline = time.monotonic() + STOP_GRACE_S
        if deadline is not None and time.monotonic() > deadline:
            for child in children:
                if child.poll() is None:
                    print(f"vggnet: killing process {child.pid}, still running {STOP_GRACE_S} s after the job failed",
                          file=sys.stderr)  # fmt: skip
                    child.kill()
            deadline = None
        time.sleep(MONITOR_INTERVAL_S)
    failure = failure or next((child for child in children if child.returncode != 0), None)
    if failure is None:
        return 0
    return failure.returncode if failure.returncode >= 0 else 128 - failure.returncode
