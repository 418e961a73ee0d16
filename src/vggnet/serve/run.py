"""`serve`: run the app with uvicorn on one socket, say when it is ready, and shut down gracefully.

On SIGTERM or Ctrl-C: readiness turns 503 at once, batches stop waiting for company, the socket stops accepting,
the requests in flight are answered, and `serve` returns (the command exits 0). A second Ctrl-C forces the exit.
"""

import asyncio
import signal
import socket
import sys

import uvicorn

from ..infer.source import LoadedModel
from .app import create_app
from .settings import ServeSettings

# How long a shutdown waits for the requests in flight before it cancels them: within Kubernetes' default 30 s
# between SIGTERM and SIGKILL, so that a client stalled mid-upload is cancelled here rather than the pod killed.
GRACE_SECONDS = 25


class _GracefulServer(uvicorn.Server):
    """uvicorn's server that calls `on_exit` (in the event loop) when a signal asks it to stop, and that returns
    normally afterwards: uvicorn itself raises the signal again once it has stopped, which would end the process
    with the signal's status instead of 0."""

    def __init__(self, config: uvicorn.Config, on_exit) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets=None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame) -> None:
        if self._loop is not None and not self.should_exit:
            self._loop.call_soon_threadsafe(self._on_exit)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


def serve(
    models: dict[str, LoadedModel],
    settings: ServeSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    load_seconds: dict[str, float] | None = None,
) -> None:
    """Serve `models` on `host`:`port` (0: a free port) until SIGTERM or Ctrl-C. The server answers at once
    (readiness 503) and prints `vggnet serve: ready on http://HOST:PORT/ (models: ...)` on stderr once every model
    has run its warm-up batch.

    Raises:
        ValueError: the address cannot be bound (in use, or not this machine's).
        RuntimeError: the server stopped before it was ready (the log says why).
    """
    listener = _bind(host, port)
    bound_port = listener.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound_port}/"
    state: dict = {"ready": False, "failure": None, "signalled": False}

    def on_ready() -> None:
        state["ready"] = True
        print(f"vggnet serve: ready on {url} (models: {', '.join(models)})", file=sys.stderr, flush=True)

    def on_failure(error: BaseException) -> None:
        state["failure"] = error
        server.should_exit = True

    def on_signal() -> None:
        state["signalled"] = True
        app.state.server.drain()

    app = create_app(models, settings, load_seconds, warm_up_in_background=True, on_ready=on_ready,
                     on_failure=on_failure)  # fmt: skip
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACE_SECONDS)
    server = _GracefulServer(config, on_exit=on_signal)
    server.run(sockets=[listener])
    if state["failure"] is not None:
        raise RuntimeError(f"the models' warm-up batch failed: {state['failure']}") from state["failure"]
    if not state["ready"] and not state["signalled"]:
        raise RuntimeError("the server stopped before it was ready; the messages above say why")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP said outright: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets that name it, and
    # with it on, a response written in two parts waits for the client's delayed ACK (40 ms a request).
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise ValueError(
            f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or --host"
        ) from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener
