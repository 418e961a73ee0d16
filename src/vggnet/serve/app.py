"""`create_app`: the FastAPI application that `vggnet serve` runs, for any number of loaded models.

Requests pass, outermost first: the metrics (every request counted, timed and given a `Server-Timing` header),
HEAD answered as GET without the body, CORS (when origins are allowed), the API key (when set), the upload limit,
then the routes (`kserve`: the Open Inference Protocol; `routes`: the plain routes and the page). Every error
answers `{"error": "..."}`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect

from .._version import __version__
from ..infer.source import LoadedModel
from . import kserve, routes
from .guards import error_response, limit_uploads, require_api_key
from .served import ModelServer
from .settings import ServeSettings
from .telemetry import Telemetry

logger = logging.getLogger("vggnet")


def create_app(
    models: dict[str, LoadedModel],
    settings: ServeSettings | None = None,
    load_seconds: dict[str, float] | None = None,
    *,
    warm_up_in_background: bool = False,
    on_ready: Callable[[], None] | None = None,
    on_failure: Callable[[BaseException], None] | None = None,
) -> FastAPI:
    """The HTTP service for `models` (name -> loaded model; the first is the default).

    >>> import vggnet
    >>> from fastapi.testclient import TestClient
    >>> from vggnet.serve import create_app
    >>> model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    >>> model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": vggnet.Preprocess(32, 32).to_dict()}
    >>> app = create_app({"tiny": vggnet.load_for_inference(model, device="cpu")})
    >>> with TestClient(app) as client:  # the lifespan warms the model up
    ...     client.get("/v2/health/ready").status_code, client.get("/v2/models/tiny").json()["outputs"][0]["shape"]
    (200, [-1, 3])

    Args:
        models: What to serve, by the name used in the routes.
        settings: Batching, limits, API key, CORS (defaults: `ServeSettings()`).
        load_seconds: Seconds each model took to load, for the `vggnet_model_load_seconds` metric.
        warm_up_in_background: Start answering at once and run the warm-up batches behind (readiness is 503 until
            they are done: what a server behind probes wants), rather than warming up before the first answer
            (what a test client wants).
        on_ready: Called once every model has run its warm-up batch (`vggnet serve` prints its ready line).
        on_failure: Called with the error if a warm-up batch fails in the background (`vggnet serve` stops).
    """
    settings = settings or ServeSettings()
    telemetry = Telemetry()
    server = ModelServer(models, settings, telemetry, load_seconds)

    async def warm_up() -> None:
        try:
            await server.start()
        except Exception as error:
            if not warm_up_in_background or on_failure is None:
                raise
            logger.error("the warm-up batch failed: %s", error)
            on_failure(error)
            return
        if on_ready is not None:
            on_ready()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        warming = asyncio.get_running_loop().create_task(warm_up())
        if not warm_up_in_background:
            await warming
        try:
            yield
        finally:
            warming.cancel()
            await asyncio.gather(warming, return_exceptions=True)
            server.drain()
            await server.close()

    app = FastAPI(
        title="vggnet",
        version=__version__,
        summary="VGG image classification: the Open Inference Protocol (KServe v2) and plain routes.",
        lifespan=lifespan,
    )
    app.state.server = server
    app.include_router(kserve.router)
    app.include_router(routes.router)
    for kind in (StarletteHTTPException, HTTPException):
        app.add_exception_handler(kind, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    # add_middleware wraps what is there: the last added is the outermost.
    app.add_middleware(_Wrap, wrap=lambda inner: limit_uploads(inner, settings.max_upload_bytes))
    if settings.api_key:
        app.add_middleware(_Wrap, wrap=lambda inner: require_api_key(inner, settings.api_key))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Server-Timing", "X-Class", "X-Class-Index", "X-Probability"],
        )
    app.add_middleware(_Wrap, wrap=answer_head)
    app.add_middleware(_Wrap, wrap=telemetry.middleware)
    return app


def answer_head(app):
    """`app` answering HEAD wherever it answers GET, as HTTP asks (`curl -I`, uptime checks): the GET's status and
    headers, Content-Length included, without the body. FastAPI's routes take only the methods they name."""

    async def answered(scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await app(scope, receive, send)

        async def without_body(message):
            if message["type"] != "http.response.body":
                await send(message)
            elif not message.get("more_body", False):
                await send({"type": "http.response.body", "body": b""})

        as_get = {**scope, "method": "GET"}
        await app(as_get, receive, without_body)
        if "route" in as_get:  # the route the router matched, for the metrics around this
            scope["route"] = as_get["route"]

    return answered


class _Wrap:
    """Starlette's middleware signature (a class called with the inner app) for a function that wraps an app."""

    def __init__(self, app, wrap) -> None:
        self.app = wrap(app)

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)


async def _client_gone(request: Request, error: ClientDisconnect) -> Response:
    """A client that left before its request's body arrived: nobody to answer, and no fault of the server's; counted
    as 499, as nginx counts it ("client closed request"), not as a 500 with a traceback in the log."""
    return Response(status_code=499)


async def _http_error(request: Request, error: StarletteHTTPException):
    if isinstance(error.__cause__, ClientDisconnect):  # FastAPI's 400 for a JSON body that never arrived
        return await _client_gone(request, error.__cause__)
    return error_response(error.status_code, str(error.detail), getattr(error, "headers", None))


async def _validation_error(request: Request, error: RequestValidationError):
    """422 naming each bad field (`query topk: Input should be greater than or equal to 1`), or saying what is wrong
    with a JSON body that is not JSON: where it fails and why, or the content type it needs."""
    problems = []
    for problem in error.errors():
        where = " ".join(str(part) for part in problem.get("loc", ()))
        if problem.get("type") == "json_invalid":
            at = problem.get("loc", ("body", "?"))[-1]
            reason = (problem.get("ctx") or {}).get("error", "JSON decode error")
            problems.append(f"the body is not valid JSON: {reason} at character {at}")
        elif where == "body" and "application/json" not in request.headers.get("content-type", ""):
            problems.append("the body must be a JSON object, sent with 'Content-Type: application/json'")
        else:
            problems.append(f"{where}: {problem.get('msg', 'invalid')}")
    return error_response(422, "; ".join(problems) or "invalid request")
