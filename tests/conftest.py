"""Shared fixtures: caches private to the test session, a throwaway torch hub cache and a file server on
127.0.0.1."""

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest
import torch

# The caches that vggnet and torch read from the environment at each use (vggnet's datasets, torch hub's weights).
PRIVATE_CACHES = {"VGGNET_HOME": "vggnet", "TORCH_HOME": "torch"}
# The Ray clusters the tests start (and the benchmarks they run) report no usage statistics.
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session", autouse=True)
def private_caches(tmp_path_factory) -> Path:
    """Point `VGGNET_HOME` and `TORCH_HOME` at a folder of this test session, so that no test reads or writes the
    user's ~/.cache (the digits are generated there once per session). Set in `os.environ` rather than per test,
    so that the subprocesses the tests start inherit them."""
    root = tmp_path_factory.mktemp("caches")
    saved = {name: os.environ.get(name) for name in PRIVATE_CACHES}
    os.environ.update({name: str(root / folder) for name, folder in PRIVATE_CACHES.items()})
    yield root
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    """An empty torch hub cache for this test (what `TORCH_HOME` would give)."""
    directory = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "_hub_dir", str(directory))
    return directory


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep the test output clean
        pass


@pytest.fixture
def file_server(tmp_path):
    """Serve a folder over HTTP on 127.0.0.1; yields (folder, base URL). Stopped after the test."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: a server that is gone."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def write_image_folder(
    root: Path, classes=("ant", "bee", "cat"), per_class=8, size=20, split=True, suffix=".png"
) -> Path:
    """A tiny learnable image folder: each class is a distinct colour with noise. With `split`, train/ and val/
    (val gets half as many per class); without, class folders directly under `root`. `suffix` picks the format."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 40), (40, 60, 220), (200, 200, 40), (200, 40, 200)]
    layout = {"train": per_class, "val": max(1, per_class // 2)} if split else {"": per_class}
    for folder, count in layout.items():
        for index, name in enumerate(classes):
            directory = root / folder / name
            directory.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                noise = rng.integers(-40, 40, size=(size, size, 3))
                pixels = np.clip(np.array(colours[index % len(colours)]) + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(directory / f"{name}_{i:03d}{suffix}")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "data")


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A tiny vgg11_bn trained for two epochs on three colour classes: (best.pt, its data folder)."""
    import vggnet

    root = tmp_path_factory.mktemp("trained")
    data = write_image_folder(root / "data")
    result = vggnet.train(
        data=str(data), out=str(root / "runs"), model="vgg11_bn", head="compact", width_mult=0.125, img_size=32,
        batch_size=8, epochs=2, workers=0, lr=0.05, precision="fp32",
    )  # fmt: skip
    return result.run_dir / "best.pt", data


@pytest.fixture(scope="session")
def class_images(trained) -> list:
    """One validation image of each class (ant, bee, cat)."""
    return [trained[1] / "val" / name / f"{name}_000.png" for name in ("ant", "bee", "cat")]


@pytest.fixture(scope="session")
def trained_predictor(trained):
    """`trained`'s checkpoint loaded once for predictions, in exact fp32: the reference answers."""
    import vggnet

    return vggnet.Predictor(trained[0], device="cpu", precision="fp32")


@pytest.fixture
def job_inputs(trained, tmp_path) -> list[str]:
    """A batch job's inputs: the 36 images of `trained`'s data folder, an unreadable file and a missing one."""
    (tmp_path / "notes.png").write_bytes(b"not an image")
    return [str(trained[1]), str(tmp_path / "notes.png"), str(tmp_path / "gone.png")]


def rows_by_path(folder) -> dict[str, dict]:
    """The rows of a batch job's Parquet output folder by path, checking that no path has two."""
    import pyarrow.parquet as pq

    rows = pq.read_table(folder).to_pylist()
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "a path has two rows"
    return {row["path"]: row for row in rows}


# A tiny run of the main job's architecture (vgg11_bn, compact head, 32x32) at 1/8 width: seconds per epoch.
TINY = {
    "model": "vgg11_bn",
    "head": "compact",
    "width_mult": 0.125,
    "img_size": 32,
    "batch_size": 8,
    "epochs": 3,
    "workers": 0,
    "lr": 0.05,
    "precision": "fp32",
}


def tiny_train(data, out, **overrides):
    """`vggnet.train` of the TINY settings on `data`, writing under `out`; `overrides` replace settings."""
    import vggnet

    return vggnet.train(data=str(data), out=str(out), **{**TINY, **overrides})
