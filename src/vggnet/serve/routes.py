"""The plain routes, for people and scripts: predict and explain with image uploads, the model list, metrics, and
the web page.

    curl -F files=@cat.jpg -F files=@dog.jpg 'localhost:8000/predict?topk=3'
    curl --data-binary @cat.jpg localhost:8000/v1/models/vgg16/predict
    curl -F file=@cat.jpg 'localhost:8000/explain?class=tabby' -o cam.png

Predictions are `vggnet predict --format json`'s records, the upload's file name as `path`.
"""

import functools
import io
from importlib import resources
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import UploadFile as FormFile

from ..infer.predict import top_classes
from ..infer.visualize import cam_overlay, grad_cam
from .served import server_of

router = APIRouter()
_TOPK = Query(None, ge=1, description="classes per image, most probable first (default: the server's --topk)")
_CLASS = Query(None, alias="class", description="the class to explain, by name or index (default: the top-1)")


def _upload_body(field: str, many: bool) -> dict:
    """The OpenAPI request body of an upload route: image files as multipart form data (field `field`), or one
    image as the raw body. Declared rather than taken as FastAPI `File` parameters, which would read any body as a
    form before the route sees it and lose a raw one."""
    binary = {"type": "string", "format": "binary"}
    files = {"type": "array", "items": binary} if many else binary
    form = {"type": "object", "properties": {field: files}, "required": [field]}
    return {
        "requestBody": {
            "required": True,
            "description": f"image file{'s' if many else ''} as multipart form data (field `{field}`), or one image "
            "as the raw body",
            "content": {"multipart/form-data": {"schema": form}, "application/octet-stream": {"schema": binary}},
        }
    }


_PREDICT_BODY, _EXPLAIN_BODY = _upload_body("files", many=True), _upload_body("file", many=False)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
@functools.cache
def page() -> str:
    """The web page: upload images, see the top classes and the Grad-CAM overlay (read from the package once)."""
    return resources.files("vggnet.serve").joinpath("page", "index.html").read_text(encoding="utf-8")


@router.get("/metrics", tags=["operations"], response_class=Response)
def metrics(request: Request) -> Response:
    """Prometheus metrics: requests and errors by route and status, latency, batch sizes, queue depth, load time."""
    body, content_type = server_of(request).telemetry.exposition()
    return Response(body, media_type=content_type)


@router.get("/v1/models", tags=["models"])
def list_models(request: Request) -> dict:
    """The models served: name, classes, input size, precision, where the weights came from, which is default."""
    server = server_of(request)
    return {"models": [model.describe(name == server.default) for name, model in server.models.items()]}


@router.get("/v1/models/{name}", tags=["models"])
def describe_model(name: str, request: Request) -> dict:
    """One model's description (as in `GET /v1/models`)."""
    server = server_of(request)
    return server.get(name).describe(name == server.default)


@router.post("/v1/models/{name}/predict", tags=["predict"], openapi_extra=_PREDICT_BODY)
async def predict(name: str, request: Request, topk: int | None = _TOPK):
    """Classify images: `vggnet predict --format json`'s records, in upload order."""
    return await _predict(request, name, topk)


@router.post("/predict", tags=["predict"], openapi_extra=_PREDICT_BODY)
async def predict_default(request: Request, topk: int | None = _TOPK):
    """Classify images with the default model (the first --model)."""
    return await _predict(request, None, topk)


@router.post("/v1/models/{name}/explain", tags=["explain"], response_class=Response, openapi_extra=_EXPLAIN_BODY)
async def explain(name: str, request: Request, class_: str | None = _CLASS):
    """The Grad-CAM overlay of one image as a PNG; headers say what it explains: X-Class (the class name,
    percent-encoded), X-Class-Index and X-Probability."""
    return await _explain(request, name, class_)


@router.post("/explain", tags=["explain"], response_class=Response, openapi_extra=_EXPLAIN_BODY)
async def explain_default(request: Request, class_: str | None = _CLASS):
    """The Grad-CAM overlay of one image with the default model."""
    return await _explain(request, None, class_)


async def _predict(request: Request, name: str | None, topk: int | None) -> list[dict]:
    server = server_of(request)
    model = server.get(name)
    uploads = await _uploads(request)
    logits = await model.logits(await model.images(uploads))
    tops = top_classes(logits, model.classes, topk or server.settings.topk)
    return [{"path": path, "top": top} for (path, _), top in zip(uploads, tops, strict=True)]


async def _explain(request: Request, name: str | None, target: str | None) -> Response:
    model = server_of(request).get(name)
    uploads = await _uploads(request)
    if len(uploads) != 1:
        raise HTTPException(400, f"explain takes one image; the request has {len(uploads)}")
    [rgb] = await model.decoded(uploads)
    try:
        result = await model.run_exclusive(lambda: grad_cam(model.loaded, rgb, target=target))
    except ValueError as error:  # the class asked for: a bad parameter, as a bad topk is
        raise HTTPException(422, str(error).replace("--class", "class")) from None
    png = io.BytesIO()
    cam_overlay(result).save(png, format="PNG")
    # Header values are Latin-1: a class name is sent percent-encoded (UTF-8), so that any name arrives intact.
    headers = {
        "X-Class": quote(result.class_name, safe=" "),
        "X-Class-Index": str(result.class_index),
        "X-Probability": f"{result.probability:.6f}",
    }
    return Response(png.getvalue(), media_type="image/png", headers=headers)


async def _uploads(request: Request) -> list[tuple[str, bytes]]:
    """(file name, bytes) of every file in a multipart form, in order, or ("image", body) for a raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files = [value for _, value in form.multi_items() if isinstance(value, FormFile)]
        if not files:
            raise HTTPException(400, "the multipart form has no file; send the images as the field 'files'")
        return [(file.filename or f"file{i}", await file.read()) for i, file in enumerate(files)]
    body = await request.body()
    return [("image", body)] if body else []
