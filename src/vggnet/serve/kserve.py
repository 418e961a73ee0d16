"""The Open Inference Protocol (KServe v2) over HTTP, the subset for classifiers, with Triton's classification
extension: what a KServe or Triton client, or a Kubernetes probe, expects.

    curl localhost:8000/v2/health/ready
    curl -X POST localhost:8000/v2/models/vgg11_bn/infer -d '{"inputs": [{"name": "image", "datatype": "BYTES",
         "shape": [1], "data": ["<base64 of a JPEG>"]}], "outputs": [{"name": "probabilities",
         "parameters": {"classification": 3}}]}'

A model takes one input: `input`, FP32 (N, 3, S, S), already preprocessed, or `image`, BYTES (N), base64-encoded
image files that the server decodes and preprocesses exactly as `vggnet predict` does. It answers `logits` and
`probabilities`, FP32 (N, classes); asked for an output with the `classification` parameter K, that output is
instead BYTES (N, K) of `"<value>:<index>:<class>"`, best first.
"""

import base64
import binascii
import math
from typing import Any

import torch
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from .._version import __version__
from .served import ServedModel, server_of

OUTPUTS = ("logits", "probabilities")


class InferInput(BaseModel):
    name: str = Field(description="`input` (FP32, preprocessed) or `image` (BYTES, base64 image files)")
    shape: list[int] = Field(description="[N, 3, S, S] for `input`, [N] for `image`")
    datatype: str = Field(description="FP32 for `input`, BYTES for `image`")
    data: list[Any] = Field(description="numbers (flat, row-major, or nested) or base64 strings")
    parameters: dict[str, Any] | None = None


class InferOutput(BaseModel):
    name: str = Field(description="`logits` or `probabilities`")
    parameters: dict[str, Any] | None = Field(
        None, description='`{"classification": K}`: the top K as "value:index:class" strings instead of the tensor'
    )


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InferInput]
    outputs: list[InferOutput] | None = Field(None, description="which outputs to return (default: all)")
    parameters: dict[str, Any] | None = None


router = APIRouter(prefix="/v2", tags=["Open Inference Protocol (KServe v2)"])


@router.get("")
def server_metadata() -> dict:
    """Server metadata: name, version and the protocol extensions supported."""
    return {"name": "vggnet", "version": __version__, "extensions": ["classification"]}


@router.get("/health/live")
def live() -> dict:
    """200 while the process runs (never needs the API key)."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "warming up or shutting down"}})
def ready(request: Request) -> dict:
    """200 once every model is loaded and has run a warm-up batch; 503 before that and while shutting down."""
    server = server_of(request)
    if not server.ready:
        raise HTTPException(503, server.not_ready_reason())
    return {"ready": True}


@router.get("/models/{name}")
def model_metadata(name: str, request: Request) -> dict:
    """The model's inputs and outputs, with shapes (-1: any batch size) and datatypes."""
    model = server_of(request).get(name)
    size, classes = model.img_size, len(model.classes)
    return {
        "name": name,
        "versions": [],
        "platform": "pytorch",
        "inputs": [
            {"name": "input", "datatype": "FP32", "shape": [-1, 3, size, size]},
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [{"name": output, "datatype": "FP32", "shape": [-1, classes]} for output in OUTPUTS],
    }


@router.get("/models/{name}/ready", responses={503: {"description": "warming up or shutting down"}})
def model_ready(name: str, request: Request) -> dict:
    """200 once this model has run its warm-up batch (and the server is not shutting down)."""
    server = server_of(request)
    model = server.get(name)
    if server.draining or not model.ready:
        raise HTTPException(503, f"model {name!r} is not ready: {server.not_ready_reason()}")
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer")
async def infer(name: str, body: InferRequest, request: Request) -> dict:
    """Run the model on one input tensor; answers the outputs asked for (all by default)."""
    model = server_of(request).get(name)
    if len(body.inputs) != 1:
        raise HTTPException(400, f"the request has {len(body.inputs)} inputs; send exactly one, 'input' or 'image'")
    wanted = body.outputs or [InferOutput(name=output) for output in OUTPUTS]
    classification = [_classification(output) for output in wanted]  # checked before the model runs
    logits = await model.logits(await _batch(model, body.inputs[0]))
    response = {"model_name": name, "outputs": []}
    if body.id is not None:
        response["id"] = body.id
    for output, k in zip(wanted, classification, strict=True):
        values = logits if output.name == "logits" else logits.softmax(dim=1)
        response["outputs"].append(_output(output.name, values, k, model.classes))
    return response


def _classification(output: InferOutput) -> int | None:
    if output.name not in OUTPUTS:
        raise HTTPException(400, f"unknown output {output.name!r}; this model has: {', '.join(OUTPUTS)}")
    k = (output.parameters or {}).get("classification")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise HTTPException(400, f"output {output.name!r}: classification must be a whole number >= 1, got {k!r}")
    return k


async def _batch(model: ServedModel, tensor: InferInput) -> torch.Tensor:
    """The preprocessed batch an input holds (an FP32 tensor as it is, BYTES image files decoded)."""
    kinds = {"input": "FP32", "image": "BYTES"}
    if tensor.name not in kinds:
        raise HTTPException(400, f"unknown input {tensor.name!r}; this model takes 'input' (FP32) or 'image' (BYTES)")
    if tensor.datatype != kinds[tensor.name]:
        raise HTTPException(
            400, f"input {tensor.name!r} must be {kinds[tensor.name]}, got datatype {tensor.datatype!r}"
        )
    if tensor.name == "image":
        if len(tensor.shape) != 1 or tensor.shape[0] != len(tensor.data):
            raise HTTPException(400, f"input 'image' has shape {tensor.shape} and {len(tensor.data)} elements; "
                                f"its shape must be [{len(tensor.data)}]")  # fmt: skip
        return await model.images([(f"image[{i}]", _base64(i, item)) for i, item in enumerate(tensor.data)])
    size = model.img_size
    if len(tensor.shape) != 4 or tensor.shape[0] < 1 or tensor.shape[1:] != [3, size, size]:
        raise HTTPException(400, f"input 'input' has shape {tensor.shape}; this model takes [N, 3, {size}, {size}]")
    try:
        values = await run_in_threadpool(torch.tensor, tensor.data, dtype=torch.float32)  # off the event loop
    except (TypeError, ValueError, RuntimeError) as error:
        raise HTTPException(400, f"input 'input' data must be numbers (flat or nested evenly): {error}") from None
    if values.numel() != math.prod(tensor.shape):
        raise HTTPException(400, f"input 'input' has {values.numel()} values; shape {tensor.shape} needs "
                            f"{math.prod(tensor.shape)}")  # fmt: skip
    if not torch.isfinite(values).all():
        raise HTTPException(400, "input 'input' holds NaN or infinite values")
    return values.reshape(tensor.shape)


def _base64(index: int, item: Any) -> bytes:
    if not isinstance(item, str):
        raise HTTPException(400, f"input 'image' element {index} must be a base64 string, got {type(item).__name__}")
    try:
        # Line breaks (base64's MIME form, 76 characters a line: `base64` without -w0, Python's encodebytes) are
        # taken out; anything else not of the alphabet is refused.
        return base64.b64decode("".join(item.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise HTTPException(400, f"input 'image' element {index} is not valid base64: {error}") from None


def _output(name: str, values: torch.Tensor, k: int | None, classes: list[str]) -> dict:
    if k is None:
        return {"name": name, "datatype": "FP32", "shape": list(values.shape), "data": values.flatten().tolist()}
    top, indices = values.topk(min(k, values.shape[1]), dim=1)
    data = [
        f"{value!r}:{index}:{classes[index]}"
        for row_values, row_indices in zip(top.tolist(), indices.tolist(), strict=True)
        for value, index in zip(row_values, row_indices, strict=True)
    ]
    return {"name": name, "datatype": "BYTES", "shape": list(top.shape), "data": data}
