"""`vggnet benchmark`: the report's structure and correctness checks (never its timings)."""

import json

import pytest

import vggnet
from vggnet.cli import main
from vggnet.infer.benchmark import BASELINE, benchmark, compute_ceiling, render_benchmark


def test_benchmark_report(image_folder):
    pytest.importorskip("torchao")
    report = benchmark("vgg11", batch_sizes=(2,), img_size=32, rounds=2, data=image_folder, training=False,
                       device="cpu", int8=True, peers=True)  # fmt: skip
    rows = {row["path"]: row for row in report["inference"]}
    assert BASELINE in rows and "vggnet fp32" in rows
    assert rows[BASELINE]["ratio_to_baseline"] == pytest.approx(1.0)
    fast = [name for name in rows if name.startswith("vggnet default")]
    assert len(fast) == 1
    assert rows["vggnet int8 (PT2E) + torch.compile"]["top1_agreement_vs_fp32"] > 0.5
    assert "int8" in report["ceilings_gflops"]
    assert rows["onnxruntime fp32"]["max_logit_diff_vs_fp32"] < 1e-4  # the same function, another runtime
    if "openvino (default)" in rows:
        assert rows["openvino (default)"]["top1_agreement_vs_fp32"] > 0.5
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["latency_p90_ms"] >= row["latency_p50_ms"] > 0
        assert row["gflops"] > 0 and row["fraction_of_ceiling"] > 0
        assert 0 <= row["top1_agreement_vs_fp32"] <= 1
    # The baseline and vggnet's fp32 path compute the same function of the same weights.
    assert rows[BASELINE]["top1_agreement_vs_fp32"] == 1.0
    assert rows[BASELINE]["max_logit_diff_vs_fp32"] < 1e-4
    assert report["agreement_images"] == 36  # every image of the folder (train/ and val/)
    assert report["gmacs_per_image"] == pytest.approx(vggnet.summarize("vgg11", 32).total_macs / 1e9)
    text = render_benchmark(report)
    assert "vs baseline" in text and "compute ceiling" in text


def test_compute_ceiling_is_a_rate():
    import torch

    assert compute_ceiling(torch.float32, torch.device("cpu"), repeats=1) > 0


def test_benchmark_cli_json(image_folder, capsys):
    code = main(["benchmark", "--model", "vgg11", "--img-size", "32", "--batch-size", "1", "--rounds", "1",
                 "--data", str(image_folder), "--no-training", "--format", "json", "--device", "cpu"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "vgg11" and len(report["inference"]) >= 3
    assert main(["benchmark", "--batch-size", "one"]) == 2
