"""`vggnet serve` under load on loopback, against the in-process `Predictor` on the same images (the ceiling).

    python benchmarks/serve.py                              # a random-weights vgg11 (width 1/2) at 224 px
    python benchmarks/serve.py --requests 60                # a quick look
    python benchmarks/serve.py --model runs/train/exp/best.pt --format json

The script starts `vggnet serve --port 0 --device cpu --precision fp32` itself, with dynamic batching on (the
default flags) and off (`--max-batch-size 1`), and at concurrency 1, 8 and 32 sends `--requests` requests, each one
JPEG photo (500x375, a dozen distinct ones) as a multipart upload to `POST /predict`, reporting images/s and the
p50/p90/p99 latency seen by the client. The ceiling is `vggnet.Predictor` in this process on the same files, same
device and precision: its rate at batch 8 and its median latency on one image (decoding included, as in the
server). The targets of issue 13, with the default flags:

- at concurrency 32, throughput at least 85% of the in-process batched rate;
- at concurrency 1, p50 latency at most 1.25x the in-process batch-1 latency.

On a small machine the load generator competes with the server for the CPU, so it is kept light: one thread per
client, each on its own keep-alive `http.client` connection, sending multipart bodies built before the clock starts;
each client sends two requests before it (so that no connection set-up is timed). Both sides run torch with its
default threads. On a machine shared with other work the speed changes from minute to minute, so each run is paired
with the ceiling measured just before it (the server up and idle), and its ratios are to that. The CPU time that
the client and the server spend per image is shown beside each run, and the server's own time for the request (its
`Server-Timing` header) beside the client's latency: what remains is the HTTP round trip.
"""

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import numpy as np
import torch
from workload import cpu_name, make_checkpoint, make_images

import vggnet

THROUGHPUT_TARGET = 0.85  # of the in-process batched rate, at concurrency 32 with batching on
LATENCY_TARGET = 1.25  # times the in-process batch-1 latency, p50 at concurrency 1 with batching on
CONCURRENCIES = (1, 8, 32)
CEILING_IMAGES, CEILING_CALLS = 64, 32  # the in-process images at batch 8, and calls on one image, before each run
MODES = {"on": [], "off": ["--max-batch-size", "1"]}  # dynamic batching: the default flags, or one image a batch
READY = re.compile(r"vggnet serve: ready on (http://\S+?)/? ")
BOUNDARY = "vggnet-benchmark-boundary"


def in_process(predictor: vggnet.Predictor, images: list[Path]) -> dict:
    """The ceiling now: `predictor`'s images/s at batch 8 over CEILING_IMAGES images, and its median latency on one
    image over CEILING_CALLS calls (files decoded and preprocessed, as the server does with uploads)."""
    paths = [images[i % len(images)] for i in range(CEILING_IMAGES)]
    started = time.perf_counter()
    predictor(paths)
    rate = len(paths) / (time.perf_counter() - started)
    latencies = []
    for path in paths[:CEILING_CALLS]:
        started = time.perf_counter()
        predictor([path])
        latencies.append(time.perf_counter() - started)
    return {"batched_images_per_s": rate, "batch1_latency_ms": 1000 * statistics.median(latencies)}


@contextlib.contextmanager
def running_server(args: list[str], timeout: float = 180) -> Iterator[tuple[str, subprocess.Popen]]:
    """`vggnet serve --port 0 *args` in a subprocess, from its ready line until SIGTERM; yields (URL, process)."""
    command = [sys.executable, "-m", "vggnet", "serve", "--port", "0", *args]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        try:
            yield _ready_url(process, log, timeout), process
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ready_url(process: subprocess.Popen, log: IO[bytes], timeout: float) -> str:
    """The URL of the server's ready line in `log`, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # pread: the server writes through the same open file, so its offset must stay at the end.
        text = os.pread(log.fileno(), os.fstat(log.fileno()).st_size, 0).decode(errors="replace")
        if match := READY.search(text):
            return match.group(1)
        if process.poll() is not None:
            raise RuntimeError(f"vggnet serve exited ({process.returncode}) before it was ready:\n{text}")
        time.sleep(0.1)
    raise RuntimeError(f"vggnet serve was not ready within {timeout:.0f} s")


def multipart(path: Path) -> bytes:
    """A multipart/form-data body holding the file as field `files` (BOUNDARY separates the parts)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
        f"Content-Type: image/jpeg\r\n\r\n"
    )
    return head.encode() + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux's /proc), or nan where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime and stime, fields 14 and 15


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load(url: str, pid: int, bodies: list[bytes], concurrency: int, requests: int) -> dict:
    """`requests` POST /predict requests from `concurrency` clients (client c sends requests c, c + concurrency,
    ...), all started together after each has sent two untimed ones; the figures of the timed ones."""
    address = urlsplit(url)
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies, server_times = [0.0] * requests, [0.0] * requests
    start = threading.Barrier(concurrency + 1)
    failures = []

    def post(connection: http.client.HTTPConnection, body: bytes) -> float:
        connection.request("POST", "/predict", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
        if response.status != 200:
            raise RuntimeError(f"POST /predict answered {response.status}: {answer[:200]!r}")
        match = re.search(r"total;dur=([\d.]+)", response.getheader("Server-Timing", ""))
        return float(match.group(1)) / 1000 if match else float("nan")

    def client(first: int) -> None:
        connection = http.client.HTTPConnection(address.hostname, address.port, timeout=120)
        try:
            for _ in range(2):
                post(connection, bodies[first % len(bodies)])
            start.wait()
            for number in range(first, requests, concurrency):
                started = time.perf_counter()
                server_times[number] = post(connection, bodies[number % len(bodies)])
                latencies[number] = time.perf_counter() - started
        except Exception as error:  # reported by the main thread, which fails the run
            failures.append(error)
            start.abort()
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a client failed before the start: see `failures`
        start.wait(timeout=300)
    started, client_cpu, server_cpu = time.perf_counter(), own_cpu_seconds(), process_cpu_seconds(pid)
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    elapsed = time.perf_counter() - started
    p50, p90, p99 = (1000 * float(value) for value in np.percentile(latencies, [50, 90, 99]))
    return {
        "concurrency": concurrency,
        "images_per_s": requests / elapsed,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "server_p50_ms": 1000 * statistics.median(server_times),
        "client_cpu_ms_per_image": 1000 * (own_cpu_seconds() - client_cpu) / requests,
        "server_cpu_ms_per_image": 1000 * (process_cpu_seconds(pid) - server_cpu) / requests,
    }


def measure(checkpoint: Path, images: list[Path], requests: int) -> dict:
    """Every (batching mode, concurrency) run, each mode on a fresh server, each run after the in-process figures
    measured just before it (the server up and idle), so that a machine whose speed changes with other work
    compares like with like."""
    predictor = vggnet.Predictor(checkpoint, device="cpu", precision="fp32", batch_size=8)
    for warm_up in (images[:8], images[:1]):  # the first batch of each size sets up its kernels
        predictor(warm_up)
    bodies = [multipart(path) for path in images]
    load_average = [os.getloadavg()[0]]  # the highest 1-minute load average seen is reported
    runs = {}
    for mode, flags in MODES.items():
        args = ["--model", str(checkpoint), "--device", "cpu", "--precision", "fp32", *flags]
        runs[mode] = []
        with running_server(args) as (url, process):
            for concurrency in CONCURRENCIES:
                ceiling = in_process(predictor, images)
                run = load(url, process.pid, bodies, concurrency, requests)
                runs[mode].append({
                    **run,
                    "in_process": ceiling,
                    "rate_ratio": run["images_per_s"] / ceiling["batched_images_per_s"],
                    "p50_ratio": run["p50_ms"] / ceiling["batch1_latency_ms"],
                })  # fmt: skip
                load_average.append(os.getloadavg()[0])
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "load_average": max(load_average),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "model": str(checkpoint),
        "requests": requests,
        "runs": runs,
    }


def verdicts(measured: dict) -> list[dict]:
    """The two targets, with the default flags (batching on): measured, limit, ratio, pass."""
    runs = {run["concurrency"]: run for run in measured["runs"]["on"]}
    fast, alone = runs[max(CONCURRENCIES)], runs[1]
    return [
        {
            "target": f"images/s at concurrency 32 >= {THROUGHPUT_TARGET:.0%} of in-process batch 8",
            "measured": fast["images_per_s"],
            "limit": THROUGHPUT_TARGET * fast["in_process"]["batched_images_per_s"],
            "ratio": fast["rate_ratio"],
            "pass": fast["rate_ratio"] >= THROUGHPUT_TARGET,
        },
        {
            "target": f"p50 ms at concurrency 1 <= {LATENCY_TARGET}x in-process batch 1",
            "measured": alone["p50_ms"],
            "limit": LATENCY_TARGET * alone["in_process"]["batch1_latency_ms"],
            "ratio": alone["p50_ratio"],
            "pass": alone["p50_ratio"] <= LATENCY_TARGET,
        },
    ]


def render(measured: dict, results: list[dict]) -> str:
    lines = [
        f"{measured['cpu']} ({measured['cores']} cores), torch {measured['torch']} ({measured['torch_threads']} "
        f"threads), fp32 on the CPU; {measured['requests']} requests a run; model {measured['model']}",
    ]
    if measured["load_average"] > measured["cores"]:
        lines.append(
            f"warning: the machine is busy (load average up to {measured['load_average']:.1f} on "
            f"{measured['cores']} cores): the figures move with the other work, even paired as they are"
        )
    lines += [
        "",
        "in process: vggnet.Predictor just before each run (batch 8 images/s; batch 1 median ms); ratio: the "
        "server's figure over it",
        f"  {'batching':<8} {'clients':>7} {'images/s':>9} {'in proc':>8} {'ratio':>6} {'p50 ms':>8} {'in proc':>8} "
        f"{'ratio':>6} {'p90 ms':>8} {'p99 ms':>8} {'server p50':>11} {'cpu/image: client':>18} {'server':>8}",
    ]
    for mode, runs in measured["runs"].items():
        for run in runs:
            ceiling = run["in_process"]
            lines.append(
                f"  {mode:<8} {run['concurrency']:>7} {run['images_per_s']:9.1f} "
                f"{ceiling['batched_images_per_s']:8.1f} {run['rate_ratio']:6.2f} {run['p50_ms']:8.1f} "
                f"{ceiling['batch1_latency_ms']:8.1f} {run['p50_ratio']:6.2f} {run['p90_ms']:8.1f} "
                f"{run['p99_ms']:8.1f} {run['server_p50_ms']:8.1f} ms {run['client_cpu_ms_per_image']:15.1f} ms "
                f"{run['server_cpu_ms_per_image']:5.1f} ms"
            )
    lines += ["", "targets (default flags: batching on):"]
    for result in results:
        lines.append(
            f"  {result['target']:<56} {result['measured']:7.1f} (limit {result['limit']:.1f}) "
            f"ratio {result['ratio']:.2f}  {'PASS' if result['pass'] else 'FAIL'}"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a vggnet checkpoint (default: a random-weights vgg11, built here)")
    parser.add_argument("--requests", type=int, default=300, help="requests per run (300)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.requests < max(CONCURRENCIES):
        parser.error(f"--requests must be at least {max(CONCURRENCIES)} (one per client), got {args.requests}")
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = args.model or make_checkpoint(Path(folder))
        measured = measure(checkpoint, make_images(Path(folder)), args.requests)
    results = verdicts(measured)
    if args.format == "json":
        print(json.dumps({**measured, "targets": results}, indent=2))
    else:
        print(render(measured, results))
    return 0 if all(result["pass"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
