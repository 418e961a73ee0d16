"""Stopping a run cleanly: the first Ctrl-C or SIGTERM asks the loop to stop at the next batch boundary, where it
saves `last.pt` and raises `TrainingInterrupted`; the data-loading workers leave both signals to the training
process."""

import contextlib
import signal
import sys
import threading
from pathlib import Path


class StopRequest(contextlib.AbstractContextManager):
    """Turns the first Ctrl-C or SIGTERM into a request to stop at the next batch boundary (a second Ctrl-C
    interrupts at once). Outside the main thread, signals stay as they are. `announce`: say so on stderr (the main
    process does; under torchrun every process receives the terminal's Ctrl-C)."""

    def __init__(self, announce: bool = True) -> None:
        self.requested = False
        self.announce = announce
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            why = "Ctrl-C again to stop at once" if signum == signal.SIGINT else signal.Signals(signum).name
            print(f"\nstopping after this batch ({why})...", file=sys.stderr)

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# The exit code of a command stopped by Ctrl-C or SIGTERM (a training run with its last.pt saved): what a shell
# gives a process that Ctrl-C ended.
INTERRUPTED = 128 + signal.SIGINT


class TrainingInterrupted(KeyboardInterrupt):
    """Raised after Ctrl-C or SIGTERM once `last.pt` is saved; `resume_command` continues the run."""

    def __init__(self, checkpoint: Path) -> None:
        self.checkpoint = checkpoint
        self.resume_command = f"vggnet train --resume {checkpoint}"
        super().__init__(f"training interrupted; last.pt saved. Resume with: {self.resume_command}")


def ignore_stop_signals(_worker_id: int) -> None:
    """Loader workers leave Ctrl-C and SIGTERM to the training process, which stops them cleanly."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
