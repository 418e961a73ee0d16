"""Where vggnet's log messages go when it runs as a command: plainly on stderr, without logging's prefixes.

    vggnet predict --model runs/train/exp/best.pt photos/ --compile 2> messages.txt

As a library vggnet only logs to the `vggnet` logger (warnings such as skipped unreadable images, reports such as
the compile time) and leaves the handlers to the application; the command line calls `show_vggnet_messages`.
"""

import logging
import sys


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time of each message."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


# Other libraries' warnings that say nothing to a vggnet user, silenced by the command line: PyTorch's notice that
# torchao registers an Enum the old way (at every int8 start), and that a CUDA build of PyTorch finds no CUDA
# toolkit where there is no GPU to use it (at every compilation on such a machine).
UNHELPFUL_LOGGERS = ("torch.utils._pytree", "torch.utils.cpp_extension")


def show_vggnet_messages() -> None:
    """Print vggnet's own log messages (reports, warnings) plainly on stderr; other libraries' stay as set, but for
    the warnings of `UNHELPFUL_LOGGERS` (their errors still show)."""
    logger = logging.getLogger("vggnet")
    if not any(isinstance(handler, _StderrHandler) for handler in logger.handlers):
        logger.addHandler(_StderrHandler())
    logger.setLevel(logging.INFO)
    for name in UNHELPFUL_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
