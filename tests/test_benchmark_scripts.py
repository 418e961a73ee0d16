"""The benchmark scripts run end to end on short settings and report figures that hang together. The figures are
wall-clock measurements, so whether they meet their targets is not asserted here (a short run on a busy machine
may miss); that the verdict follows from the figures is."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_the_serve_benchmark_reports_every_run_and_target(trained):
    command = [sys.executable, str(BENCHMARKS / "serve.py"), "--model", str(trained[0]), "--requests", "32",
               "--format", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed
    report = json.loads(done.stdout)
    assert sorted(report["runs"]) == ["off", "on"]
    for runs in report["runs"].values():
        assert [run["concurrency"] for run in runs] == [1, 8, 32]
        for run in runs:
            assert run["images_per_s"] > 0 and 0 < run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]
            assert run["server_p50_ms"] <= run["p50_ms"]  # the server's own time is part of the client's
            ceiling = run["in_process"]
            assert run["rate_ratio"] == pytest.approx(run["images_per_s"] / ceiling["batched_images_per_s"])
            assert run["p50_ratio"] == pytest.approx(run["p50_ms"] / ceiling["batch1_latency_ms"])
    targets = {target["target"]: target for target in report["targets"]}
    assert len(targets) == 2
    for name, target in targets.items():
        within = target["ratio"] >= 0.85 if name.startswith("images/s") else target["ratio"] <= 1.25
        assert target["pass"] == within
    assert (done.returncode == 0) == all(target["pass"] for target in targets.values())


@pytest.mark.slow
def test_the_stream_benchmark_reports_throughput_and_memory():
    command = [sys.executable, str(BENCHMARKS / "stream.py"), "--images", "64", "--small", "100", "--large", "300",
               "--workers", "0", "--format", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    rates, memory = report["images_per_s"], report["peak_memory_mb"]
    assert min(rates.values()) > 0 and sorted(rates) == ["in_process", "ray", "stream"]
    assert sorted(memory) == ["100", "300"]
    assert report["rate_ratio"] == pytest.approx(rates["stream"] / rates["in_process"])
    assert report["ray_ratio"] == pytest.approx(rates["ray"] / rates["in_process"])
    assert report["memory_ratio"] == pytest.approx(memory["300"] / memory["100"])
    passed = report["rate_ratio"] >= 0.9 and report["ray_ratio"] >= 0.75 and report["memory_ratio"] <= 1.1
    assert report["pass"] == passed
    assert done.returncode == (0 if report["pass"] else 1)


@pytest.mark.slow
def test_the_scan_benchmark_reports_cold_and_warm_rates():
    command = [sys.executable, str(BENCHMARKS / "scan.py"), "--images", "300", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["images"] == 300 and sorted(report["images_per_s"]) == ["cold", "discovery", "warm"]
    for step, seconds in report["seconds"].items():
        assert report["images_per_s"][step] == pytest.approx(300 / seconds)
    assert report["index_mb"] > 0


def test_the_data_pipeline_benchmark_reports_each_worker_count():
    command = [
        sys.executable,
        str(BENCHMARKS / "data_pipeline.py"),
        "--images",
        "48",
        "--workers",
        "0,1",
        "--rounds",
        "1",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    rates = re.findall(r"^CPU, +(\d+) loader workers: +(\d+) images/s$", done.stdout, re.MULTILINE)
    assert [workers for workers, _ in rates] == ["0", "1"] and all(int(rate) > 0 for _, rate in rates)
    assert "48 JPEGs of 500x375 to 224 px" in done.stdout


@pytest.mark.slow
def test_the_predict_photos_benchmark_times_both_sides_on_every_photo():
    command = [sys.executable, str(BENCHMARKS / "predict_photos.py"), "--images", "8", "--size", "320x240",
               "--rounds", "1", "--model", "vgg11", "--format", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: the target missed
    report = json.loads(done.stdout)
    cases = ["torchvision", "vggnet", "vggnet_workers0"]
    assert report["images"] == 8 and report["predicted"] == dict.fromkeys(cases, 8)
    assert sorted(report["wall_s"]) == cases and report["photos_mb"] > 0
    for name in cases:
        assert report["images_per_s"][name] == pytest.approx(8 / report["wall_s"][name])
    for name in cases[1:]:
        assert report["ratios"][name] == pytest.approx(report["wall_s"]["torchvision"] / report["wall_s"][name])
    assert report["headline"] == "vggnet" and report["ratio"] == report["ratios"]["vggnet"]
    assert report["pass"] == (report["ratio"] >= 3.0)
    assert done.returncode == (0 if report["pass"] else 1)


@pytest.mark.slow
def test_the_train_digits_benchmark_times_the_command_in_both_precisions():
    command = [sys.executable, str(BENCHMARKS / "train_digits.py"), "--epochs", "1", "--format", "json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a target missed (one epoch reaches no 0.98)
    report = json.loads(done.stdout)
    runs = report["runs"]
    assert sorted(runs) == ["default", "fp32"] and report["rounds"] == 1 and report["epochs"] == 1
    for run in runs.values():
        assert run["epochs"] == 1 and 0 <= run["best_top1"] <= 1
        assert run["wall_s"] > 0 and run["images_per_s"] > 0
    assert report["speedup"] == pytest.approx(runs["fp32"]["wall_s"] / runs["default"]["wall_s"])
    checks = report["checks"]
    assert checks == {
        "wall_s": runs["default"]["wall_s"] <= 60,
        "top1_floor": runs["default"]["best_top1"] >= 0.98,
        "speedup": report["speedup"] >= 1.8,
        "same_top1": runs["default"]["best_top1"] >= runs["fp32"]["best_top1"] - 0.01,
    }
    assert report["pass"] == all(checks.values())
    assert done.returncode == (0 if report["pass"] else 1)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_cpu_kernels_benchmark_times_both_sides_of_each_case(precision):
    command = [sys.executable, str(BENCHMARKS / "cpu_kernels.py"), "--model", "vgg11", "--img-size", "64",
               "--batch-size", "1", "--train-batch-size", "2", "--rounds", "2", "--precision", precision,
               "--format", "json"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    onednn, without_winograd = ["oneDNN only", "vggnet's"], ["without Winograd", "with Winograd"]
    cases = [
        ("inference vgg11 64 batch 1", ["oneDNN only", "with Winograd"]),
        ("training vgg11 (classic) 64 batch 2", onednn),
        ("training vgg11 (classic) 64 batch 2", without_winograd),
        ("training vgg11 (compact) 32 batch 64", onednn),
        ("training vgg11 (compact) 32 batch 64", without_winograd),
    ]
    if precision == "bf16":  # vggnet's bf16 kernels are Winograd's alone
        cases = [case for case in cases if case[1] != without_winograd]
    assert report["precision"] == precision
    assert [(row["case"], list(row["images_per_s"])) for row in report["rows"]] == cases
    for row in report["rows"]:
        base, ours = row["images_per_s"].values()
        assert base > 0 and ours > 0
        assert row["ratio"] == pytest.approx(ours / base)
        assert len(row["round_ratios"]) == 2
