"""What the serve tests share: `ServeProcess` (a real `vggnet serve` on a free loopback port), the route tables,
request helpers, and reference records from `vggnet.Predictor` (conftest's `trained_predictor`)."""

import base64
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

READY = re.compile(r"vggnet serve: ready on (http://\S+?)/ ")

CLASSES = ["ant", "bee", "cat"]

# The routes that take a model name, and the ones that use the default model.
MODEL_ROUTES = [
    ("GET", "/v1/models/{name}"), ("POST", "/v1/models/{name}/predict"), ("POST", "/v1/models/{name}/explain"),
    ("GET", "/v2/models/{name}"), ("GET", "/v2/models/{name}/ready"), ("POST", "/v2/models/{name}/infer"),
]  # fmt: skip
DEFAULT_MODEL_ROUTES = [("GET", "/v2"), ("GET", "/v1/models"), ("POST", "/predict"), ("POST", "/explain")]
PROTECTED_ROUTES = [("GET", "/metrics"), *DEFAULT_MODEL_ROUTES, *MODEL_ROUTES]
OPEN_ROUTES = [("GET", "/v2/health/live"), ("GET", "/v2/health/ready"), ("GET", "/"), ("GET", "/docs")]


def call(client, method: str, route: str, image: bytes, name: str = "a", **kwargs):
    """`route` (a template) for model `name`, with a valid body for the POST routes: `image` as the raw body, or as
    the one BYTES input of an infer request."""
    path = route.format(name=name)
    if method == "GET":
        return client.get(path, **kwargs)
    if path.endswith("/infer"):
        return client.post(path, json=bytes_request([image]), **kwargs)
    return client.post(path, content=image, headers={"Content-Type": "image/png", **kwargs.pop("headers", {})})


def bytes_request(images: list[bytes], outputs: list[dict] | None = None) -> dict:
    """A KServe v2 infer request with the image files as one base64 BYTES input."""
    data = [base64.b64encode(image).decode() for image in images]
    request = {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [len(images)], "data": data}]}
    return request if outputs is None else {**request, "outputs": outputs}


def assert_same_records(got: list[dict], expected: list[dict]) -> None:
    """`got` (the server's records) equals `expected` (Predictor's, same order): same paths, classes and indices in
    the same order, probabilities within 1e-3."""
    assert [r["path"] for r in got] == [r["path"] for r in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert [(t["class"], t["index"]) for t in mine["top"]] == [(t["class"], t["index"]) for t in theirs["top"]]
        assert [t["prob"] for t in mine["top"]] == pytest.approx([t["prob"] for t in theirs["top"]], abs=1e-3)


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`, in Prometheus' text format (0 when none)."""
    samples = [sample for family in text_string_to_metric_families(text) for sample in family.samples]
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def expected_records(predictor, paths, topk: int = 3) -> list[dict]:
    """Predictor's records for `paths`, each path shortened to the file name (what an upload is called)."""
    return [{**record, "path": path.name} for record, path in zip(predictor(paths, topk=topk), paths, strict=True)]


class ServeProcess:
    """`vggnet serve --port 0 *args` as a context manager: entering waits for the ready line (at most
    `start_timeout` seconds) and sets `url`; leaving stops the process (SIGTERM) if it still runs.

    stderr is read all the time by a thread (a server that logs into a full pipe would block), and kept:
    `stderr_lines()` returns what it has printed so far.
    """

    def __init__(
        self, args: list[str], env: dict[str, str] | None = None, cwd=None, start_timeout: float = 180
    ) -> None:
        self.args, self.env, self.cwd, self.start_timeout = args, env, cwd, start_timeout
        self.url: str | None = None
        self.process: subprocess.Popen | None = None
        self._lines: list[str] = []
        self._new_lines: queue.Queue[str | None] = queue.Queue()

    def __enter__(self) -> "ServeProcess":
        command = [sys.executable, "-m", "vggnet", "serve", "--port", "0", *self.args]
        environment = {**os.environ, **(self.env or {})}
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                                        env=environment, cwd=self.cwd)  # fmt: skip
        threading.Thread(target=self._read_stderr, daemon=True).start()
        try:
            self.url = self._wait_for_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _read_stderr(self) -> None:
        for line in self.process.stderr:
            self._lines.append(line)
            self._new_lines.put(line)
        self._new_lines.put(None)  # the process closed stderr: it has ended

    def _wait_for_ready(self) -> str:
        while True:
            try:
                line = self._new_lines.get(timeout=self.start_timeout)
            except queue.Empty:
                raise TimeoutError(f"no ready line within {self.start_timeout} s:\n{''.join(self._lines)}") from None
            if line is None:
                raise RuntimeError(f"vggnet serve ended before it was ready:\n{''.join(self._lines)}")
            if match := READY.search(line):
                return match.group(1)

    def stderr_lines(self) -> list[str]:
        return list(self._lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` (if the process still runs) and return its exit code once it has ended."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
