"""`vggnet serve`'s HTTP API through FastAPI's test client: every route and every error, the API key, CORS, the
upload limit and the full queue. Answers are checked against independent references: `vggnet.Predictor` for the
records, the model's own forward for tensors, `vggnet.grad_cam` for the explained class, PIL for the PNG."""

import base64
import dataclasses
import io
import json
import re
import struct
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image
from serving import (
    CLASSES,
    MODEL_ROUTES,
    OPEN_ROUTES,
    PROTECTED_ROUTES,
    assert_same_records,
    bytes_request,
    call,
    expected_records,
    metric_value,
    wait_for,
)

import vggnet
from vggnet.serve import ServeSettings, create_app


def decompression_bomb(side: int = 20000) -> bytes:
    """A 50 kB PNG of side x side blank 1-bit pixels (400 megapixels decoded), written chunk by chunk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # width, height, bit depth 1, greyscale
    rows = bytes(side * (1 + side // 8))  # each row: filter byte 0, then side/8 bytes of zero bits
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def loaded(trained):
    return vggnet.load_for_inference(trained[0], device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def client(loaded):
    """The server of two models, `a` (the default) and `b`, both the tiny checkpoint; warmed up."""
    with TestClient(create_app({"a": loaded, "b": loaded})) as client:
        yield client


def served(loaded, **settings) -> TestClient:
    """A test client of a one-model server (`a`) with these settings; enter it to warm up."""
    return TestClient(create_app({"a": loaded}, ServeSettings(**settings)))


def test_server_metadata_and_health(client):
    metadata = {"name": "vggnet", "version": vggnet.__version__, "extensions": ["classification"]}
    assert client.get("/v2").json() == metadata
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200  # the lifespan warmed both models up


@pytest.mark.parametrize("name", ["a", "b"])
def test_model_metadata(client, name):
    inputs = [{"name": "input", "datatype": "FP32", "shape": [-1, 3, 32, 32]},
              {"name": "image", "datatype": "BYTES", "shape": [-1]}]  # fmt: skip
    outputs = [{"name": output, "datatype": "FP32", "shape": [-1, 3]} for output in ("logits", "probabilities")]
    metadata = {"name": name, "versions": [], "platform": "pytorch", "inputs": inputs, "outputs": outputs}
    assert client.get(f"/v2/models/{name}").json() == metadata
    assert client.get(f"/v2/models/{name}/ready").status_code == 200


def test_models_list_the_default_first(client, trained):
    described = {"classes": CLASSES, "img_size": 32, "precision": "fp32", "source": str(trained[0])}
    models = client.get("/v1/models").json()["models"]
    assert models == [{"name": "a", **described, "default": True}, {"name": "b", **described, "default": False}]
    assert client.get("/v1/models/b").json() == models[1]


@pytest.mark.parametrize("method, route", MODEL_ROUTES)
def test_an_unknown_model_is_404(client, class_images, method, route):
    response = call(client, method, route, class_images[0].read_bytes(), name="x")
    assert response.status_code == 404
    assert re.fullmatch(r"unknown model 'x'; [\w ]+: a, b", response.json()["error"])  # names the ones served


@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_infer_a_tensor_equals_the_models_forward(client, trained, loaded, class_images, layout):
    transform = loaded.preprocess.transform()
    x = torch.stack([transform(Image.open(path).convert("RGB")) for path in class_images])
    with torch.no_grad():
        logits = vggnet.load_model(trained[0]).eval()(x)
    data = x.flatten().tolist() if layout == "flat" else x.tolist()
    request = {"id": "42", "inputs": [{"name": "input", "datatype": "FP32", "shape": list(x.shape), "data": data}]}
    answer = client.post("/v2/models/b/infer", json=request).json()  # no outputs asked: all of them
    assert answer["model_name"] == "b" and answer["id"] == "42"
    assert [(o["name"], o["datatype"], o["shape"]) for o in answer["outputs"]] == [
        ("logits", "FP32", [3, 3]), ("probabilities", "FP32", [3, 3])
    ]  # fmt: skip
    assert answer["outputs"][0]["data"] == pytest.approx(logits.flatten().tolist(), abs=1e-4)
    assert answer["outputs"][1]["data"] == pytest.approx(logits.softmax(dim=1).flatten().tolist(), abs=1e-4)


def classified(output: dict, k: int) -> list[dict]:
    """A classification output's rows ("value:index:class" strings, best first) as prediction records."""
    tops = [{"class": name, "index": int(index), "prob": float(value)}
            for value, index, name in (entry.split(":", 2) for entry in output["data"])]  # fmt: skip
    return [{"path": "image", "top": tops[row : row + k]} for row in range(0, len(tops), k)]


def test_infer_image_files_equals_predictor(client, trained_predictor, class_images):
    asked = [{"name": "probabilities"}, {"name": "probabilities", "parameters": {"classification": 2}},
             {"name": "logits", "parameters": {"classification": 3}}]  # fmt: skip
    request = bytes_request([path.read_bytes() for path in class_images], outputs=asked)
    probs, top2, logits = client.post("/v2/models/a/infer", json=request).json()["outputs"]
    assert [(o["datatype"], o["shape"]) for o in (probs, top2, logits)] == [
        ("FP32", [3, 3]), ("BYTES", [3, 2]), ("BYTES", [3, 3])
    ]  # fmt: skip
    expected = [{**record, "path": "image"} for record in trained_predictor(class_images, topk=3)]
    for row, record in enumerate(expected):
        got = [probs["data"][row * 3 + top["index"]] for top in record["top"]]
        assert got == pytest.approx([top["prob"] for top in record["top"]], abs=1e-3)
    assert_same_records(classified(top2, 2), [{**record, "top": record["top"][:2]} for record in expected])
    by_logits = classified(logits, 3)
    for record in by_logits:  # the logits' softmax: the probabilities
        softmax = torch.tensor([top["prob"] for top in record["top"]]).softmax(dim=0).tolist()
        record["top"] = [{**top, "prob": prob} for top, prob in zip(record["top"], softmax, strict=True)]
    assert_same_records(by_logits, expected)


def _tensor_input(shape=(1, 3, 32, 32), datatype="FP32", count=None, name="input") -> dict:
    count = count if count is not None else shape[0] * shape[1] * shape[2] * shape[3]
    return {"name": name, "datatype": datatype, "shape": list(shape), "data": [0.5] * count}


def _image_input(*data) -> dict:
    return {"name": "image", "datatype": "BYTES", "shape": [len(data)], "data": list(data)}


@pytest.mark.parametrize(
    "request_body, message",
    [
        ({"inputs": [_tensor_input(shape=(1, 3, 16, 16))]}, r"shape"),
        ({"inputs": [_tensor_input(datatype="INT64")]}, r"INT64"),
        ({"inputs": [_tensor_input(count=10)]}, r"10"),
        ({"inputs": [_tensor_input(name="pixels")]}, r"pixels"),
        ({"inputs": [_image_input("not base64!!")]}, r"base64"),
        ({"inputs": [_image_input(base64.b64encode(b"hello").decode())]}, r"not an image PIL can read"),
        ({"inputs": [_tensor_input(), _tensor_input()]}, r"2 inputs"),
        ({"inputs": [_tensor_input()], "outputs": [{"name": "scores"}]}, r"scores"),
    ],
    ids=["shape", "datatype", "data-length", "input-name", "base64", "not-an-image", "two-inputs", "output-name"],
)
def test_a_bad_infer_request_is_400_naming_the_problem(client, request_body, message):
    response = client.post("/v2/models/a/infer", json=request_body)
    assert response.status_code == 400 and set(response.json()) == {"error"}
    assert re.search(message, response.json()["error"])


def _files(paths, field: str = "files") -> list:
    return [(field, (path.name, path.read_bytes(), "image/png")) for path in paths]


@pytest.mark.parametrize("route", ["/predict", "/v1/models/b/predict"])
def test_predict_several_files_in_their_order(client, trained_predictor, class_images, route):
    order = [class_images[2], class_images[0], class_images[1]]
    response = client.post(route, files=_files(order))
    assert response.status_code == 200
    assert_same_records(response.json(), expected_records(trained_predictor, order))
    assert re.fullmatch(r"total;dur=\d+(\.\d+)?", response.headers["Server-Timing"])


def test_predict_a_raw_body_is_called_image(client, trained_predictor, class_images):
    response = client.post("/predict", content=class_images[1].read_bytes(), headers={"Content-Type": "image/png"})
    [expected] = expected_records(trained_predictor, class_images[1:2])
    assert_same_records(response.json(), [{**expected, "path": "image"}])


@pytest.mark.parametrize("topk, count", [(1, 1), (2, 2), (10, 3), (None, 3)])  # capped at the 3 classes
def test_predict_topk(client, trained_predictor, class_images, topk, count):
    params = {} if topk is None else {"topk": topk}
    records = client.post("/predict", params=params, files=_files(class_images[:1])).json()
    assert_same_records(records, expected_records(trained_predictor, class_images[:1], topk=count))


def test_predict_topk_below_one_is_422(client, class_images):
    response = client.post("/predict", params={"topk": 0}, files=_files(class_images[:1]))
    assert response.status_code == 422 and "topk" in response.json()["error"]


@pytest.mark.parametrize("name, size", [("notes.txt", None), ("half.png", 200)])
def test_an_unreadable_upload_is_400_naming_the_file(client, trained_predictor, class_images, tmp_path, name, size):
    (tmp_path / name).write_bytes(b"hello" if size is None else class_images[0].read_bytes()[:size])
    [reference] = trained_predictor([tmp_path / name])  # {"path", "error"}: predict's reason
    response = client.post("/predict", files=_files([class_images[0], tmp_path / name]))
    assert response.status_code == 400
    assert response.json() == {"error": f"{name}: {reference['error']}"}


def test_a_decompression_bomb_is_400_and_the_server_goes_on(client, class_images):
    bomb = decompression_bomb()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))  # PIL's own verdict on the file
    response = client.post("/predict", files=[("files", ("bomb.png", bomb, "image/png"))])
    assert response.status_code == 400
    assert re.fullmatch(r"bomb\.png: .*decompression bomb.*", response.json()["error"])
    assert client.post("/predict", files=_files(class_images[:1])).status_code == 200


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL's, as it opens the file
def test_an_image_past_the_pixels_pil_warns_of_is_400_before_it_is_decoded(client):
    """9,500 x 9,500 (90 million pixels): PIL would only warn, and decode 270 MB from a 12 kB file."""
    large = decompression_bomb(9_500)
    assert Image.MAX_IMAGE_PIXELS < 9_500**2 < 2 * Image.MAX_IMAGE_PIXELS  # between PIL's warning and its refusal
    response = client.post("/predict", files=[("files", ("large.png", large, "image/png"))])
    assert response.status_code == 400
    assert response.json() == {
        "error": "large.png: 9500x9500 pixels to decode, more than the 89 million this takes; send a smaller image"
    }
    # A JPEG of as many pixels decodes at reduced scale (for the 32x32 model, 1/8: 1188x1188), and is taken.
    photo = io.BytesIO()
    Image.new("RGB", (9_500, 9_500), (200, 40, 40)).save(photo, "JPEG", quality=50)
    response = client.post("/predict", files=[("files", ("large.jpg", photo.getvalue(), "image/jpeg"))])
    assert response.status_code == 200 and response.json()[0]["path"] == "large.jpg"


@pytest.mark.parametrize(
    "route, params, target",
    [("/explain", {}, None), ("/v1/models/b/explain", {"class": "bee"}, "bee"), ("/explain", {"class": "2"}, 2)],
)
@pytest.mark.parametrize("upload", ["multipart", "raw"])
def test_explain_returns_the_grad_cam_overlay(client, loaded, class_images, route, params, target, upload):
    reference = vggnet.grad_cam(loaded, class_images[0], target=target)
    if upload == "multipart":
        response = client.post(route, params=params, files=_files(class_images[:1], field="file"))
    else:
        response = client.post(route, params=params, content=class_images[0].read_bytes())
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["X-Class"] == reference.class_name
    assert int(response.headers["X-Class-Index"]) == reference.class_index
    assert float(response.headers["X-Probability"]) == pytest.approx(reference.probability, abs=1e-3)
    overlay = Image.open(io.BytesIO(response.content))
    assert overlay.format == "PNG" and overlay.width == overlay.height >= 224


def test_explain_sends_any_class_name_intact(loaded, class_images):
    """Header values are Latin-1: a class name outside it arrives percent-encoded, and decodes to itself."""
    names = ["蚂蚁", "abeille à miel", "cat/dog 100%"]
    with served(dataclasses.replace(loaded, classes=names)) as client:
        for index, name in enumerate(names):
            response = client.post("/explain", params={"class": index}, content=class_images[0].read_bytes())
            assert response.status_code == 200 and unquote(response.headers["X-Class"]) == name


@pytest.mark.parametrize(
    ("target", "error"),
    [("nope", "unknown class 'nope'; choose one of: ant, bee, cat"),
     ("7", "class 7 is out of range; the model has classes 0..2")],
)  # fmt: skip
def test_explain_an_unknown_class_names_it_as_a_bad_parameter(client, class_images, target, error):
    response = client.post("/explain", params={"class": target}, files=_files(class_images[:1], field="file"))
    assert (response.status_code, response.json()) == (422, {"error": error})


def test_metrics_count_the_requests(client, class_images):
    before = client.get("/metrics").text
    for path in class_images[:2]:
        assert client.post("/predict", files=_files([path])).status_code == 200
    assert client.post("/predict", content=b"hello").status_code == 400
    after = client.get("/metrics").text

    def grew(name, **labels):
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert grew("vggnet_requests_total", route="/predict", method="POST", status="200") == 2
    assert grew("vggnet_requests_total", route="/predict", method="POST", status="400") == 1
    assert grew("vggnet_request_errors_total", route="/predict", status="400") == 1
    assert grew("vggnet_request_duration_seconds_count", route="/predict") == 3
    assert grew("vggnet_batch_size_count", model="a") == 2  # one image after the other: a batch each
    assert grew("vggnet_batch_size_sum", model="a") == 2
    assert metric_value(after, "vggnet_queue_depth", model="a") == 0
    assert metric_value(after, "vggnet_model_load_seconds", model="a") > 0
    assert metric_value(after, "vggnet_requests_in_flight") == 1  # this /metrics request


def test_docs_list_every_route_and_the_file_upload(client):
    assert "swagger" in client.get("/docs").text.lower()
    spec = client.get("/openapi.json").json()
    for method, route in [*PROTECTED_ROUTES, *OPEN_ROUTES[:2]]:
        assert method.lower() in spec["paths"].get(route, {}), route
    for route, field in [("/v1/models/{name}/predict", "files"), ("/v1/models/{name}/explain", "file")]:
        form = spec["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        form = spec["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]] if "$ref" in form else form
        upload = form["properties"][field]
        upload = upload.get("items", upload)  # files: an array of files
        assert upload.get("format") == "binary" or upload.get("contentMediaType") == "application/octet-stream"
    topk = {p["name"]: p for p in spec["paths"]["/predict"]["post"]["parameters"]}["topk"]
    assert topk["in"] == "query"


def test_the_page_works_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)  # nothing from a CDN


KEY = "s3cret-key"


@pytest.fixture(scope="module")
def keyed(loaded):
    with served(loaded, api_key=KEY) as client:
        yield client


@pytest.mark.parametrize("method, route", PROTECTED_ROUTES)
def test_the_api_key_guards_every_route_but_health_and_pages(keyed, class_images, method, route):
    image = class_images[0].read_bytes()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = call(keyed, method, route, image, headers=headers)
        assert response.status_code == 401, headers
        assert "Authorization: Bearer" in response.json()["error"]
    assert call(keyed, method, route, image, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


@pytest.mark.parametrize("route", [route for _, route in OPEN_ROUTES] + ["/openapi.json"])
def test_health_and_pages_need_no_key(keyed, route):
    assert keyed.get(route).status_code == 200


@pytest.mark.parametrize("origins", [("http://example.com",), ()])
def test_cors_only_for_the_origins_given(loaded, origins):
    preflight = {"Origin": "http://example.com", "Access-Control-Request-Method": "POST"}
    with served(loaded, cors_origins=origins) as client:
        response = client.options("/predict", headers=preflight)
    assert response.headers.get("access-control-allow-origin") == (origins[0] if origins else None)


def test_a_body_over_the_upload_limit_is_413(loaded, class_images):
    bodies = [
        {"content": bytes(20_000)},
        {"files": [("files", ("big.png", bytes(20_000), "image/png"))]},
        {"content": iter([bytes(8_000)] * 3)},  # sent in chunks, with no Content-Length
    ]
    with served(loaded, max_upload_mb=0.01) as client:  # 10485 bytes
        assert client.post("/predict", files=_files(class_images[:1])).status_code == 200
        for body in bodies:
            response = client.post("/predict", **body)
            assert response.status_code == 413  # not 400: the body was never decoded
            assert "--max-upload-mb" in response.json()["error"]


def test_readiness_is_503_until_the_warm_up_in_the_background_is_done(loaded):
    """As `vggnet serve` runs it: answering at once, ready only once the warm-up batch (held here behind a busy
    model thread) has run."""
    release = threading.Event()
    app = create_app({"a": loaded}, warm_up_in_background=True)
    app.state.server.get("a").executor.submit(release.wait)
    try:
        with TestClient(app) as client:
            assert client.get("/v2/health/live").status_code == 200
            for route in ("/v2/health/ready", "/v2/models/a/ready"):
                response = client.get(route)
                assert response.status_code == 503 and "warming up: a" in response.json()["error"]
            release.set()
            wait_for(lambda: client.get("/v2/health/ready").status_code == 200, "the warm-up batch")
            assert client.get("/v2/models/a/ready").status_code == 200
    finally:
        release.set()


def test_a_failed_warm_up_in_the_background_is_reported_and_never_ready(loaded):
    failures = []
    app = create_app({"a": loaded}, warm_up_in_background=True, on_failure=failures.append)

    def broken(images):
        raise RuntimeError("out of memory")

    app.state.server.get("a").runner = broken
    with TestClient(app) as client:
        wait_for(lambda: failures, "the warm-up failure")
        assert [str(error) for error in failures] == ["out of memory"]
        assert client.get("/v2/health/ready").status_code == 503


def test_a_full_queue_is_503_with_retry_after(loaded, class_images):
    """With the model held inside its first batch, one image runs (blocked) and two wait: a third waiting would
    pass `max_queue`, so it gets 503; once the model is free, the three that were taken are all answered."""
    running, release = threading.Event(), threading.Event()
    with served(loaded, max_queue=2, max_batch_size=1) as client, ThreadPoolExecutor(3) as pool:
        model = client.app.state.server.get("a")
        runner = model.runner

        def held(images):
            running.set()
            release.wait()
            return runner(images)

        model.runner = held
        try:
            first, *others = class_images
            taken = [pool.submit(client.post, "/predict", files=_files([first]))]
            # It runs before the others come (else they would be one batch's worth of the queue).
            wait_for(running.is_set, "the first image's batch running")
            taken += [pool.submit(client.post, "/predict", files=_files([path])) for path in others]
            queued = lambda: metric_value(client.get("/metrics").text, "vggnet_queue_depth", model="a")  # noqa: E731
            wait_for(lambda: queued() == 2, "one image running and two waiting")
            full = client.post("/predict", files=_files(class_images[:1]))
        finally:
            release.set()
        assert full.status_code == 503 and int(full.headers["Retry-After"]) >= 1
        assert "--max-queue" in full.json()["error"]
        assert [answer.result(timeout=60).status_code for answer in taken] == [200] * 3


def test_a_lone_request_does_not_wait_for_company():
    """No other request is being decoded: the batch runs at once, not after `max_delay_s` (an hour here; the
    bound below only catches a wait)."""
    import asyncio

    from vggnet.serve.batcher import DynamicBatcher

    async def lone() -> list[int]:
        sizes = []
        batcher = DynamicBatcher(lambda x: x.sum(dim=(1, 2, 3)), ThreadPoolExecutor(1), max_batch_size=8,
                                 max_delay_s=3600, max_queue=8, on_batch=sizes.append)  # fmt: skip
        batcher.start()
        await asyncio.wait_for(batcher.submit(torch.ones(1, 3, 2, 2)), timeout=120)
        await batcher.stop()
        return sizes

    assert asyncio.run(lone()) == [1]


def test_head_is_answered_wherever_get_is_without_the_body(client):
    for path in ("/", "/v2/health/live", "/v2/health/ready", "/v2/models/a", "/metrics"):
        got, head = client.get(path), client.head(path)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        assert head.headers["content-type"] == got.headers["content-type"], path
    if_length = client.head("/v2/health/live").headers.get("content-length")
    assert if_length == client.get("/v2/health/live").headers.get("content-length")
    refused = client.head("/predict")  # a POST route: not one that GET answers either
    assert refused.status_code == 405 and refused.content == b""
    metrics = client.get("/metrics").text  # counted under their routes, as HEAD
    assert metric_value(metrics, "vggnet_requests_total", route="/v2/health/live", method="HEAD", status="200") >= 2


def test_a_client_that_leaves_mid_upload_is_counted_as_gone_not_as_a_server_error(loaded):
    """Its body never arrives (the connection closed): nobody to answer, no 500, no traceback in the log."""
    import asyncio

    with served(loaded) as server:
        started = []

        async def receive():
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                started.append(message["status"])

        headers = [(b"content-type", b"image/png"), (b"content-length", b"1000")]
        for path in ("/predict", "/v1/models/a/predict", "/v2/models/a/infer"):
            scope = {"type": "http", "method": "POST", "path": path, "raw_path": path.encode(), "query_string": b"",
                     "headers": headers, "http_version": "1.1", "scheme": "http", "server": ("testserver", 80),
                     "client": ("127.0.0.1", 1), "root_path": ""}  # fmt: skip
            asyncio.run(server.app(scope, receive, send))
        metrics = server.get("/metrics").text
    assert started == [499, 499, 499]
    assert metric_value(metrics, "vggnet_requests_total", status="499") == 3
    assert metric_value(metrics, "vggnet_requests_total", status="500") == 0


def test_a_kserve_body_that_is_not_json_says_why(client, class_images):
    broken = client.post("/v2/models/a/infer", content=b'{"inputs": [', headers={"content-type": "application/json"})
    assert (broken.status_code, broken.json()) == (422, {"error": "the body is not valid JSON: Expecting value at "
                                                                  "character 12"})  # fmt: skip
    untyped = client.post("/v2/models/a/infer", content=json.dumps(bytes_request([class_images[0].read_bytes()])))
    assert (untyped.status_code, untyped.json()) == (
        422, {"error": "the body must be a JSON object, sent with 'Content-Type: application/json'"}
    )  # fmt: skip


def test_base64_with_line_breaks_is_taken_as_without(client, class_images):
    """base64's MIME form (76 characters a line: `base64` without -w0, Python's encodebytes) decodes to the file."""
    image = class_images[0].read_bytes()
    wrapped = bytes_request([image])
    wrapped["inputs"][0]["data"] = [base64.encodebytes(image).decode()]
    assert "\n" in wrapped["inputs"][0]["data"][0]
    one_line = client.post("/v2/models/a/infer", json=bytes_request([image]))
    assert client.post("/v2/models/a/infer", json=wrapped).json() == one_line.json()
    foreign = bytes_request([image])
    foreign["inputs"][0]["data"] = ["*" + foreign["inputs"][0]["data"][0]]  # not of the alphabet: still refused
    assert client.post("/v2/models/a/infer", json=foreign).status_code == 400
