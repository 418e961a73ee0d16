"""The two gates in front of every route, as ASGI middleware: the upload limit and the API key."""

import hmac

from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse

# What a client may reach without the key: the health checks (probes carry no secrets) and the static pages, which
# hold no model data and run nothing (the page asks for the key and sends it with each call).
OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/", "/docs", "/docs/oauth2-redirect", "/openapi.json"})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The body every error has, as the Open Inference Protocol says: `{"error": "..."}`."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def limit_uploads(app, max_bytes: int):
    """`app` behind a limit on request bodies: one that declares more than `max_bytes` (Content-Length) gets 413
    before any of it is read; one sent in chunks without a length gets 413 as soon as it passes the limit."""
    limit_text = f"{max_bytes / 2**20:.3g} MB"

    async def limited(scope, receive, send):
        if scope["type"] != "http":
            return await app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await error_response(400, f"Content-Length {declared!r} is not a number")(scope, receive, send)
            if int(declared) > max_bytes:
                message = f"the request body is {int(declared)} bytes; the server takes at most {limit_text} "
                message += "(--max-upload-mb)"
                return await error_response(413, message)(scope, receive, send)
        received, refused, started = 0, False, False

        async def counting_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > max_bytes:
                    refused = True
                    if not started:
                        too_large = f"the request body passed {limit_text}, the most the server takes (--max-upload-mb)"
                        await error_response(413, too_large)(scope, receive, send)
                    return {"type": "http.disconnect"}  # the app stops reading; its own answer is dropped
            return message

        async def guarded_send(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await app(scope, counting_receive, guarded_send)
        except ClientDisconnect:  # what the app makes of the end of a body refused half way: answered already
            if not refused:
                raise

    return limited


def require_api_key(app, key: str):
    """`app` with every route but `OPEN_PATHS` answering 401 unless the request has `Authorization: Bearer <key>`."""
    expected = key.encode()

    async def guarded(scope, receive, send):
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), expected):
                given = "a wrong API key" if token else "no API key"
                message = f"this server needs an API key and the request has {given}; send the header "
                message += "'Authorization: Bearer KEY'"
                response = error_response(401, message, {"WWW-Authenticate": "Bearer"})
                return await response(scope, receive, send)
        await app(scope, receive, send)

    return guarded
