"""`vggnet benchmark`: the report's structure and correctness checks (never its timings)."""

import json
import platform

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


def test_training_throughput_report():
    from vggnet import allocator

    kept = allocator.keeping_freed_memory()
    allocator.keep_freed_memory()  # as the `vggnet` command does
    try:
        report = benchmark("vgg11", batch_sizes=(1,), img_size=32, rounds=1, device="cpu", precision="bf16")
        assert allocator.keeping_freed_memory()  # restored after the baseline's rounds released it
    finally:
        (allocator.keep_freed_memory if kept else allocator.release_freed_memory)()
    assert report["vggnet_keeps_freed_memory"] == (platform.libc_ver()[0] == "glibc")
    models = [row["model"] for row in report["training"]]
    assert models == ["vgg11 (classic, 32x32)", "vgg11 (compact, 32x32)"]
    for row in report["training"]:
        fp32, default = row["images_per_s"].values()
        assert list(row["images_per_s"]) == ["fp32", "default (bf16)"]
        assert row["ratio"] == pytest.approx(default / fp32)
        # Three forward passes of work per image, against each precision's own ceiling.
        macs = vggnet.summarize("vgg11", 32, num_classes=10, head=row["model"].split(" (")[1].split(",")[0]).total_macs
        fp32_fraction, default_fraction = row["fraction_of_ceiling"].values()
        assert fp32_fraction == pytest.approx(6 * macs * fp32 / 1e9 / report["ceilings_gflops"]["fp32"])
        assert default_fraction == pytest.approx(6 * macs * default / 1e9 / report["ceilings_gflops"]["bf16"])
        assert row["data_pipeline_images_per_s"] > 0
    assert "of ceiling" in render_benchmark(report).split("training")[1]


@pytest.mark.parametrize("option", ["peers", "int8"])
def test_cpu_only_paths_are_refused_on_a_gpu(option, monkeypatch):
    import torch

    import vggnet.infer.benchmark as bench

    monkeypatch.setattr(bench, "resolve_device", lambda name: torch.device("cuda"))
    with pytest.raises(ValueError, match="--device cpu"):
        benchmark("vgg11", img_size=32, device="cuda", **{option: True})


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
