"""`vggnet serve` as a real process on a free loopback port: the ready line, every route over HTTP, the API key from
`VGGNET_API_KEY` and from `--api-key`, the upload limit decided before the body is read, SIGTERM with requests in
flight (every one answered, exit 0), and a model that fails to load (the same message as `vggnet predict`)."""

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serving import (
    OPEN_ROUTES,
    PROTECTED_ROUTES,
    ServeProcess,
    assert_same_records,
    call,
    expected_records,
    metric_value,
    wait_for,
)

KEY = "process-key"
ORIGIN = "http://example.com"


@pytest.fixture(scope="module")
def server(trained):
    """Models `a` and `b` (the tiny checkpoint), the API key from the environment, CORS for ORIGIN, 1 MB uploads."""
    best, _ = trained
    args = ["--model", f"a={best}", "--model", f"b={best}", "--device", "cpu", "--precision", "fp32"]
    args += ["--max-upload-mb", "1", "--cors-origin", ORIGIN]
    with ServeProcess(args, env={"VGGNET_API_KEY": KEY}) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def ready_lines(server: ServeProcess) -> list[str]:
    return [line.rstrip("\n") for line in server.stderr_lines() if "ready on" in line]


def test_one_ready_line_names_the_url_and_the_models(server):
    assert ready_lines(server) == [f"vggnet serve: ready on {server.url}/ (models: a, b)"]


@pytest.mark.parametrize("method, route", [*PROTECTED_ROUTES, *OPEN_ROUTES, ("GET", "/openapi.json")])
def test_every_route_answers(client, class_images, method, route):
    assert call(client, method, route, class_images[0].read_bytes()).status_code == 200


def test_predict_over_http_equals_predictor(client, trained_predictor, class_images):
    files = [("files", (path.name, path.read_bytes(), "image/png")) for path in class_images]
    response = client.post("/v1/models/b/predict", files=files)
    assert_same_records(response.json(), expected_records(trained_predictor, class_images))


@pytest.mark.parametrize("route", ["/predict", "/v2/models/a", "/metrics"])
def test_the_key_from_the_environment_is_needed(server, class_images, route):
    method = "POST" if route == "/predict" else "GET"
    response = call(httpx, method, server.url + route, class_images[0].read_bytes())
    assert response.status_code == 401
    assert "Authorization: Bearer" in response.json()["error"]
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200  # the health checks stay open


def test_cors_for_the_origin_given(client):
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    assert client.options("/predict", headers=preflight).headers["access-control-allow-origin"] == ORIGIN


def test_a_declared_body_over_the_limit_is_413_before_it_is_read(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:  # no answer in 30 s: a failure
        head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        head += "Content-Type: image/png\r\nContent-Length: 1000000000\r\n\r\n"
        connection.sendall(head.encode() + b"\x89PNG")  # 1 GB declared, 4 bytes sent
        response = http.client.HTTPResponse(connection, method="POST")
        response.begin()
        assert response.status == 413
        assert "--max-upload-mb" in json.loads(response.read())["error"]


def _not_ready(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/ready", timeout=5).status_code == 503
    except httpx.TransportError:  # the port is closed: the server is gone
        return True


def test_sigterm_answers_every_request_in_flight_then_exits_0(trained, trained_predictor, class_images):
    """Six uploads are in flight (each has sent half its body and waits) when SIGTERM comes: the server stops
    accepting at once, then answers all six once their bodies arrive, and exits 0."""
    best, _ = trained
    auth = {"Authorization": f"Bearer {KEY}"}
    args = ["--model", str(best), "--api-key", KEY, "--device", "cpu", "--precision", "fp32"]
    uploads = [class_images[i % 3] for i in range(6)]
    rest_may_follow = threading.Event()

    def halting_body(data: bytes):
        yield data[: len(data) // 2]
        rest_may_follow.wait(120)
        yield data[len(data) // 2 :]

    with ServeProcess(args) as server:
        assert httpx.get(server.url + "/v1/models").status_code == 401  # --api-key is in force

        def predict(path):
            headers = {**auth, "Content-Type": "image/png"}
            return httpx.post(server.url + "/predict", content=halting_body(path.read_bytes()), headers=headers,
                              timeout=120)  # fmt: skip

        with ThreadPoolExecutor(len(uploads)) as pool:
            try:
                answers = [pool.submit(predict, path) for path in uploads]
                in_flight = lambda: metric_value(  # noqa: E731
                    httpx.get(server.url + "/metrics", headers=auth).text, "vggnet_requests_in_flight"
                )
                wait_for(lambda: in_flight() == len(uploads) + 1, "six uploads in flight (and this metrics call)")
                server.process.send_signal(signal.SIGTERM)
                wait_for(lambda: _not_ready(server.url), "readiness 503 or the port closed")
            finally:
                rest_may_follow.set()
            responses = [answer.result(timeout=120) for answer in answers]
        assert [response.status_code for response in responses] == [200] * 6
        for response, path in zip(responses, uploads, strict=True):
            [expected] = expected_records(trained_predictor, [path])
            assert_same_records(response.json(), [{**expected, "path": "image"}])
        assert server.process.wait(timeout=60) == 0
    # The default name of a model: its architecture's.
    assert ready_lines(server) == [f"vggnet serve: ready on {server.url}/ (models: vgg11_bn)"]


@pytest.mark.parametrize("checkpoint", ["nope.pt", "broken.pt"])  # missing; not a checkpoint
def test_a_model_that_fails_to_load_stops_the_server_as_predict_does(tmp_path, checkpoint):
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")

    def vggnet_says(*args):
        command = [sys.executable, "-m", "vggnet", *args]
        result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        return result.returncode, result.stderr.strip().splitlines()[-1]

    serve_code, serve_message = vggnet_says("serve", "--model", checkpoint, "--port", "0")
    predict_code, predict_message = vggnet_says("predict", "--model", checkpoint, "x.jpg")
    assert serve_code == predict_code == 2
    assert serve_message.removeprefix("vggnet serve: ") == predict_message.removeprefix("vggnet predict: ")
    assert serve_message.startswith("vggnet serve: error: ") and checkpoint in serve_message


@pytest.mark.parametrize("package", ["fastapi", "uvicorn", "python_multipart", "prometheus_client"])
def test_serve_without_the_serve_extra_names_it(trained, monkeypatch, capsys, package):
    from vggnet.cli import main

    monkeypatch.setitem(sys.modules, package, None)  # what an import of a package that is not installed meets
    assert main(["serve", "--model", str(trained[0])]) == 1
    err = capsys.readouterr().err
    assert f"vggnet serve needs {package}: pip install 'vggnet[serve]'" in err and "Traceback" not in err


def test_a_port_in_use_is_a_clear_error(trained, capsys):
    from vggnet.cli import main

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(trained[0]), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another --port" in err
