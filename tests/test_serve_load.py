"""Correctness under load: 400 requests from 32 concurrent clients to a real `vggnet serve` process on loopback,
good and bad images mixed, on the plain route and the KServe v2 route. Every good answer must equal
`vggnet.Predictor`'s for that image, every bad one must be a 400 naming the file, and `GET /metrics` must have
counted them all, with dynamic batching seen at work."""

import base64
import io
import itertools
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import write_image_folder
from PIL import Image
from serving import ServeProcess, metric_value

CLIENTS = 32
REQUESTS = 400
ROUTES = {"predict": "/predict", "infer": "/v2/models/{name}/infer"}  # as `vggnet_requests_total` labels them
# The requests cycle through these shapes: the route, then one letter per file, "g" a good image and "b" a bad one.
SHAPES = [
    ("predict", "g"),
    ("predict", "g"),
    ("predict", "gg"),
    ("predict", "b"),
    ("predict", "gb"),
    ("infer", "g"),
    ("infer", "gg"),
    ("infer", "b"),
]


def write_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """(good, bad) image files: fourteen distinct images of various sizes, modes and formats, and three files no
    decoder reads (text, a truncated PNG, an empty file)."""
    good = sorted(write_image_folder(folder / "colours", per_class=3, split=False).rglob("*.png"))
    noise = np.random.default_rng(1).integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    alpha = np.tile(np.array([0, 255], dtype=np.uint8), (30, 20))  # every other column transparent
    variants = {
        "photo.jpg": Image.fromarray(noise[:48, :64]),
        "large.jpg": Image.fromarray(noise),  # large enough for a JPEG to be decoded at a reduced scale
        "alpha.png": Image.fromarray(np.dstack([noise[:30, :40], alpha])),
        "grey.jpg": Image.fromarray(noise[:50, :25, 0]),
        "small.bmp": Image.fromarray(noise[:9, :7]),
    }
    for name, image in variants.items():
        image.save(folder / name)
        good.append(folder / name)
    png = io.BytesIO()
    Image.fromarray(noise[:64, :64]).save(png, format="PNG")
    bad = {
        "notes.txt": b"not an image at all\n",
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "empty.png": b"",
    }
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    return good, [folder / name for name in bad]


def request_plan(good: list[Path], bad: list[Path]) -> list[tuple[str, list[Path]]]:
    """REQUESTS (route, files) pairs following SHAPES, the images taken in turn from `good` and `bad`."""
    pools = {"g": itertools.cycle(good), "b": itertools.cycle(bad)}
    shapes = itertools.islice(itertools.cycle(SHAPES), REQUESTS)
    return [(route, [next(pools[letter]) for letter in letters]) for route, letters in shapes]


def send(client: httpx.Client, route: str, files: list[Path], model: str, topk: int) -> httpx.Response:
    """One request: the files as multipart `files` to POST /predict, or as a BYTES input to the v2 infer route."""
    if route == "predict":
        uploads = [("files", (path.name, path.read_bytes(), "application/octet-stream")) for path in files]
        return client.post(ROUTES[route], params={"topk": topk}, files=uploads)
    encoded = [base64.b64encode(path.read_bytes()).decode("ascii") for path in files]
    body = {
        "inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(files)], "data": encoded}],
        "outputs": [{"name": "probabilities"}],
    }
    return client.post(ROUTES[route].format(name=model), json=body)


def run_clients(url: str, plan: list[tuple[str, list[Path]]], model: str, topk: int) -> dict[int, httpx.Response]:
    """Send `plan` from CLIENTS concurrent clients (threads, each on its own keep-alive connection; client c sends
    requests c, c + CLIENTS, ...); the responses by request number."""

    def client(first: int) -> list[tuple[int, httpx.Response]]:
        with httpx.Client(base_url=url, timeout=30) as session:
            return [(number, send(session, *plan[number], model, topk)) for number in range(first, len(plan), CLIENTS)]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return dict(itertools.chain.from_iterable(pool.map(client, range(CLIENTS), timeout=120)))


def check_good_answer(route: str, files: list[Path], response: httpx.Response, reference: dict, topk: int) -> None:
    """A 200 whose predictions are `reference`'s (Predictor records by file name, every class in `top`): the same
    classes in the same order, every probability within 1e-3."""
    assert response.status_code == 200
    if route == "predict":
        records = response.json()
        assert [record["path"] for record in records] == [path.name for path in files]
        for record in records:
            want = reference[record["path"]]["top"]
            assert [(t["class"], t["index"]) for t in record["top"]] == [(t["class"], t["index"]) for t in want]
            assert [t["prob"] for t in record["top"]] == pytest.approx([t["prob"] for t in want], abs=1e-3)
    else:
        [output] = response.json()["outputs"]
        assert output["name"] == "probabilities" and output["shape"] == [len(files), topk]
        rows = np.asarray(output["data"], dtype=np.float64).reshape(len(files), topk)
        for path, row in zip(files, rows, strict=True):
            want = reference[path.name]["top"]
            assert int(row.argmax()) == want[0]["index"]
            assert row.tolist() == pytest.approx([t["prob"] for t in sorted(want, key=lambda t: t["index"])], abs=1e-3)


def check_bad_answer(route: str, files: list[Path], response: httpx.Response, bad: list[Path]) -> None:
    """A 400 whose error names the first unreadable file (v2 inputs carry no file names: an error is enough)."""
    assert response.status_code == 400
    error = response.json()["error"]
    if route == "predict":
        assert next(path.name for path in files if path in bad) in error


def wait_for_counts(client: httpx.Client, expected: Counter, timeout: float = 30) -> tuple[Counter, str]:
    """Poll GET /metrics until `vggnet_requests_total` holds `expected` (route, status) counts of POSTs (the
    middleware counts a request once its answer has gone out, so the last ones may lag), or `timeout` passes;
    returns the counts seen last and that metrics text."""
    deadline = time.monotonic() + timeout
    while True:
        text = client.get("/metrics").text
        counted = Counter(
            {
                (route, status): metric_value(text, "vggnet_requests_total", route=route, method="POST", status=status)
                for route, status in expected
            }
        )
        if counted == expected or time.monotonic() > deadline:
            return counted, text
        time.sleep(0.05)


def test_every_answer_under_load_is_predicts_answer(trained, trained_predictor, tmp_path):
    checkpoint, _ = trained
    good, bad = write_images(tmp_path)
    predictor = trained_predictor
    topk = len(predictor.classes)  # every class: the infer route's probabilities are checked against them all
    reference = {Path(record["path"]).name: record for record in predictor([*good, *bad], topk=topk)}
    assert all("top" in reference[path.name] for path in good)
    assert all("error" in reference[path.name] for path in bad)  # the reference agrees that these are bad
    plan = request_plan(good, bad)

    # --max-delay-ms 20: long enough for the 32 clients' requests to meet in batches even on a busy machine.
    args = ["--model", str(checkpoint), "--device", "cpu", "--precision", "fp32", "--max-delay-ms", "20"]
    with ServeProcess(args) as server, httpx.Client(base_url=server.url, timeout=30) as control:
        [model] = [entry["name"] for entry in control.get("/v1/models").json()["models"]]

        responses = run_clients(server.url, plan, model, topk)
        assert sorted(responses) == list(range(REQUESTS))  # every request answered

        expected, images_inferred = Counter(), 0
        for number, (route, files) in enumerate(plan):
            response = responses[number]
            context = f"request {number}: {route} {[p.name for p in files]} -> {response.status_code} {response.text}"
            try:
                if any(path in bad for path in files):
                    check_bad_answer(route, files, response, bad)
                else:
                    check_good_answer(route, files, response, reference, topk)
                    images_inferred += len(files)
            except AssertionError as error:
                raise AssertionError(f"{context}\n{error}") from None
            expected[ROUTES[route], str(response.status_code)] += 1

        counted, text = wait_for_counts(control, expected)
        assert counted == expected
        # Dynamic batching happened: more images than batches, so some batch held more than one image.
        batches = metric_value(text, "vggnet_batch_size_count", model=model)
        images = metric_value(text, "vggnet_batch_size_sum", model=model)
        assert images >= images_inferred
        assert images > batches, f"{batches:.0f} batches of {images:.0f} images: no batch held more than one image"
