"""`vggnet benchmark`: the report's structure and honesty rules (never its timings).

The compute ceiling is a timed kernel; most tests replace it (`fake_ceiling`) with chosen values, which makes them
fast and lets them set the machine's apparent state: quiet, busy, or slower than the paths.
"""

import functools
import itertools
import json
import platform
import re

import pytest
import torch
import torch._inductor.config as inductor_config

import vggnet
import vggnet.benchmark.ceiling
import vggnet.benchmark.run
from vggnet.benchmark import benchmark, render_benchmark
from vggnet.benchmark.ceiling import CeilingSamples, ceiling_kernels, compute_ceiling
from vggnet.benchmark.inference import BASELINE, ORT_CUDA_PATH, PLAIN_BASELINE, _peer_paths
from vggnet.benchmark.report import RANDOM_WEIGHTS, peer_targets
from vggnet.benchmark.training import make_training_step, training_fractions, training_throughput
from vggnet.cli import main
from vggnet.models import cpu_training
from vggnet.runtime import resolve_precision

INT8_KERNELS = {"onednn::qconv_pointwise", "onednn::qlinear_pointwise"}


@pytest.fixture
def fake_ceiling(monkeypatch):
    """`fake_ceiling(*gflops)`: each dtype's ceiling samples take the next of `gflops` (cycled, for each dtype on
    its own, so that a machine with a bf16 ceiling sees the same figures); returns the list of the dtypes sampled,
    one entry per sample."""

    def install(*gflops):
        values, sampled = {}, []

        def sample(dtype, device, repeats=10):
            sampled.append(dtype)
            return next(values.setdefault(dtype, itertools.cycle(gflops)))

        monkeypatch.setattr(vggnet.benchmark.ceiling, "compute_ceiling", sample)
        return sampled

    return install


def _percentages(text: str) -> list[float]:
    return [float(value) for value in re.findall(r"(\d+(?:\.\d+)?)%", text)]


def test_benchmark_report_on_a_trained_checkpoint(trained, fake_ceiling):
    pytest.importorskip("torchao")
    checkpoint, data = trained
    sampled = fake_ceiling(1e6)  # far above any path: every fraction is small and plain
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        report = benchmark(model=str(checkpoint), batch_sizes=(2,), rounds=2, data=data, training=False, device="cpu",
                           int8=True, peers=True)  # fmt: skip
    assert report["weights"] == str(checkpoint)
    assert report["model"] == "vgg11_bn" and report["img_size"] == 32  # the checkpoint's own crop
    assert report["baseline"] == PLAIN_BASELINE  # torchvision has no compact head
    rows = {row["path"]: row for row in report["inference"]}
    assert rows[PLAIN_BASELINE]["ratio_to_baseline"] == pytest.approx(1.0)
    # The baseline and vggnet's fp32 path compute the same function of the same weights; so does ONNX Runtime.
    assert rows[PLAIN_BASELINE]["top1_agreement_vs_fp32"] == 1.0
    assert rows[PLAIN_BASELINE]["max_logit_diff_vs_fp32"] < 1e-4
    assert rows["onnxruntime fp32"]["max_logit_diff_vs_fp32"] < 1e-4
    # A trained model's classes are far apart: int8 rounding must not change its decisions on its own data.
    assert rows["vggnet int8 (PT2E) + torch.compile"]["top1_agreement_vs_fp32"] == 1.0
    for row in rows.values():
        assert row["images_per_s"] > 0 and row["latency_p90_ms"] >= row["latency_p50_ms"] > 0
        assert 0 < row["fraction_of_ceiling"] < 1e-3
        assert 0 <= row["top1_agreement_vs_fp32"] <= 1
    assert report["agreement_images"] == 36 and report["agreement_data"] == str(data)
    # Issue 15's targets: each path's figure over OpenVINO's at the same batch size (no latency target at 2).
    openvino = rows["openvino (default)"]["images_per_s"]
    targets = {target["target"]: target for target in report["targets"]}
    assert sorted(targets) == ["default path images/s", "fastest float path images/s", "int8 images/s"]
    default = next(path for path in rows if path.startswith("vggnet default"))
    assert targets["default path images/s"]["ratio"] == pytest.approx(rows[default]["images_per_s"] / openvino)
    floats = [path for path in rows if path.startswith("vggnet") and "int8" not in path]
    fastest = max(floats, key=lambda path: rows[path]["images_per_s"])
    assert targets["fastest float path images/s"]["path"] == fastest
    int8 = targets["int8 images/s"]
    assert int8["ratio"] == pytest.approx(rows["vggnet int8 (PT2E) + torch.compile"]["images_per_s"] / openvino)
    assert int8["pass"] == (int8["ratio"] >= 2.0)
    verdict = "PASS" if int8["pass"] else "MISS"
    assert re.search(rf"int8 images/s +2 +vggnet int8 \(PT2E\) \+ torch.compile +{int8['ratio']:.2f} +>= 2 +{verdict}",
                     render_benchmark(report))  # fmt: skip
    assert report["gmacs_per_image"] == pytest.approx(
        vggnet.summarize("vgg11_bn", 32, head="compact", width_mult=0.125, num_classes=3).total_macs / 1e9
    )
    # One ceiling sample before the rounds and one after each, for every precision measured.
    assert report["ceiling_samples"] == 1 + 2
    assert len(sampled) == report["ceiling_samples"] * len(report["ceilings_gflops"])
    assert set(report["ceilings_gflops"]) >= {"fp32", "int8"}
    assert report["ceiling_spread"] == {label: 0.0 for label in report["ceilings_gflops"]}
    assert not report["machine_busy"] and report["warnings"] == []
    text = render_benchmark(report)
    assert f"weights: {checkpoint}\n" in text and "top-1 agree" in text and "WARNING" not in text
    # The int8 ceiling times the kernels that the int8 path runs.
    path_kernels = {event.key for event in profile.key_averages()}
    assert path_kernels >= INT8_KERNELS
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        assert compute_ceiling(torch.int8, torch.device("cpu"), repeats=1) > 0
    ceiling_kernels = {event.key for event in profile.key_averages() if event.key.startswith("onednn::")}
    assert ceiling_kernels >= INT8_KERNELS and ceiling_kernels <= path_kernels


def test_the_latency_target_is_int8_at_batch_1_over_openvino():
    from vggnet.benchmark.report import peer_targets

    def row(path, batch_size, images_per_s, p50_ms):
        return {"path": path, "batch_size": batch_size, "images_per_s": images_per_s, "latency_p50_ms": p50_ms}

    rows = [row("openvino (default)", 1, 10.0, 100.0), row("vggnet default (fp32)", 1, 9.0, 111.0),
            row("vggnet fp32 + torch.compile", 1, 12.0, 83.0), row("vggnet int8 (PT2E) + torch.compile", 1, 21.0, 45.0),
            row("torchvision eager fp32", 1, 30.0, 33.0)]  # fmt: skip
    targets = {target["target"]: target for target in peer_targets(rows)}
    assert targets["int8 p50 latency"]["ratio"] == pytest.approx(0.45) and targets["int8 p50 latency"]["pass"]
    default = targets["default path images/s"]
    assert default["ratio"] == pytest.approx(0.9) and not default["pass"]
    fastest = targets["fastest float path images/s"]  # vggnet's float paths only: not the baseline, not int8
    assert fastest["path"] == "vggnet fp32 + torch.compile" and fastest["ratio"] == pytest.approx(1.2)
    assert fastest["pass"]
    assert peer_targets([r for r in rows if not r["path"].startswith("openvino")]) == []


def test_random_weights_give_speed_only(fake_ceiling):
    fake_ceiling(1e6)
    report = benchmark(model="vgg11", batch_sizes=(1,), img_size=32, rounds=1, training=False, device="cpu")
    assert report["weights"] == RANDOM_WEIGHTS
    assert report["baseline"] == BASELINE  # torchvision's vgg11, with the same weights
    rows = {row["path"]: row for row in report["inference"]}
    assert all(row["top1_agreement_vs_fp32"] is None for row in rows.values())
    assert rows[BASELINE]["max_logit_diff_vs_fp32"] < 1e-4
    assert json.loads(json.dumps(report))["weights"] == RANDOM_WEIGHTS
    text = render_benchmark(report)
    assert f"weights: {RANDOM_WEIGHTS}: top-1 agreement left out" in text
    assert "top-1 agree " not in text and "largest logit difference on" in text


def test_a_weights_file_is_named(tmp_path, fake_ceiling):
    fake_ceiling(1e6)
    path = tmp_path / "weights.pth"
    torch.save(vggnet.create_model("vgg11", head="compact", num_classes=4).state_dict(), path)
    report = benchmark(model="vgg11", batch_sizes=(1,), img_size=32, rounds=1, training=False, device="cpu",
                       pretrained=path)  # fmt: skip
    assert report["weights"] == str(path)
    assert all(row["top1_agreement_vs_fp32"] is not None for row in report["inference"])
    assert f"weights: {path}\n" in render_benchmark(report)


@pytest.mark.parametrize(("worst", "busy"), [(91.0, False), (89.0, True)])
def test_a_ceiling_that_moves_more_than_ten_percent_means_busy(fake_ceiling, worst, busy):
    fake_ceiling(100.0, worst)
    ceiling = CeilingSamples({"fp32": torch.float32}, torch.device("cpu"))
    ceiling.sample()
    ceiling.sample()
    assert ceiling.best == {"fp32": 100.0}
    assert ceiling.spread["fp32"] == pytest.approx(1 - worst / 100)
    assert ceiling.busy is busy


def test_a_busy_machine_is_reported_instead_of_fractions(trained, fake_ceiling):
    checkpoint, data = trained
    fake_ceiling(1e6, 0.7e6)
    report = benchmark(model=str(checkpoint), batch_sizes=(1,), rounds=2, data=data, training=False, device="cpu")
    assert report["machine_busy"] and report["ceiling_spread"]["fp32"] == pytest.approx(0.3)
    assert report["warnings"][0].startswith("machine busy: the fp32 compute ceiling moved by 30%")
    text = render_benchmark(report)
    assert text.startswith("WARNING machine busy")
    table = text.split("\n\n")[1].splitlines()[2:-1]  # the inference rows
    assert len(table) == len(report["inference"]) and all(" busy " in line for line in table)
    assert all(value <= 100 for value in _percentages(text))


def test_a_fraction_over_the_ceiling_is_never_printed_as_a_figure(trained, fake_ceiling):
    checkpoint, data = trained
    fake_ceiling(1e-3)  # a ceiling far below every path
    report = benchmark(model=str(checkpoint), batch_sizes=(1,), rounds=1, data=data, training=False, device="cpu")
    assert not report["machine_busy"]
    assert all(row["fraction_of_ceiling"] > 1 for row in report["inference"])  # the JSON keeps what was measured
    assert report["warnings"][0].startswith("'>100%!': faster than the ceiling measured in this run")
    text = render_benchmark(report)
    assert text.count(">100%!") == len(report["inference"]) + 1  # each row, and the warning that explains it
    assert all(value <= 100 for value in _percentages(text))


def test_training_throughput_report(fake_ceiling, monkeypatch):
    from vggnet import allocator

    sampled = fake_ceiling(1e-3)  # below every path: the training fractions are clipped too
    # One timed training round after the warm-up (four by default): the report's form, not its timings.
    monkeypatch.setattr(vggnet.benchmark.run, "training_throughput", functools.partial(training_throughput, rounds=1))
    kept = allocator.keeping_freed_memory()
    allocator.keep_freed_memory()  # as the `vggnet` command does
    try:
        # `auto`: the precision this CPU runs natively (bf16 emulated is several times slower than fp32).
        report = benchmark(model="vgg11", batch_sizes=(1,), img_size=32, rounds=1, device="cpu")
        assert allocator.keeping_freed_memory()  # restored after the baseline's rounds released it
    finally:
        (allocator.keep_freed_memory if kept else allocator.release_freed_memory)()
    assert report["vggnet_keeps_freed_memory"] == (platform.libc_ver()[0] == "glibc")
    # Before the rounds, after the timed training round of each model, after the inference round.
    assert report["ceiling_samples"] == 1 + 2 + 1
    assert len(sampled) == len(report["ceilings_gflops"]) * report["ceiling_samples"]
    fast = resolve_precision("auto", torch.device("cpu"))
    models = [row["model"] for row in report["training"]]
    assert models == ["vgg11 (classic, 32x32)", "vgg11 (compact, 32x32)"]
    for row in report["training"]:
        fp32, default = row["images_per_s"].values()
        assert list(row["images_per_s"]) == ["fp32", f"default ({fast})"]
        assert row["ratio"] == pytest.approx(default / fp32)
        # Three forward passes of work per image, against each precision's own ceiling.
        macs = vggnet.summarize("vgg11", 32, num_classes=10, head=row["model"].split(" (")[1].split(",")[0]).total_macs
        fp32_fraction, default_fraction = row["fraction_of_ceiling"].values()
        assert fp32_fraction == pytest.approx(6 * macs * fp32 / 1e9 / report["ceilings_gflops"]["fp32"])
        assert default_fraction == pytest.approx(6 * macs * default / 1e9 / report["ceilings_gflops"][fast])
        assert row["data_pipeline_images_per_s"] > 0
    training = render_benchmark(report).split("training (")[1]
    assert "of ceiling" in training and training.count(">100%!") == 4


def test_each_training_path_is_a_fraction_of_its_own_precisions_ceiling():
    rows = [
        {"gflops": {"fp32": 10.0, "default (bf16)": 40.0}, "precisions": {"fp32": "fp32", "default (bf16)": "bf16"}}
    ]
    (row,) = training_fractions(rows, {"fp32": 100.0, "bf16": 200.0})
    assert row["fraction_of_ceiling"] == {"fp32": pytest.approx(0.1), "default (bf16)": pytest.approx(0.2)}


def test_int8_is_refused_on_a_gpu(monkeypatch):
    monkeypatch.setattr(vggnet.benchmark.run, "resolve_device", lambda name: torch.device("cuda"))
    with pytest.raises(ValueError, match="--int8 measures a CPU runtime.*--device cpu"):
        benchmark(model="vgg11", img_size=32, device="cuda", int8=True)


def test_without_its_cuda_provider_onnxruntime_is_left_out_on_a_gpu(caplog):
    # The onnxruntime package installed here is the CPU build: on a GPU, the peer is skipped with the fix named,
    # instead of timing ONNX Runtime on the CPU against paths on the GPU.
    network = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125)
    with caplog.at_level("WARNING", logger="vggnet"):
        assert _peer_paths(network, 32, torch.device("cuda")) == {}
    assert "CUDA provider is not in this installation" in caplog.text and "onnxruntime-gpu" in caplog.text


def _row(path, batch_size, images_per_s):
    return {"path": path, "batch_size": batch_size, "images_per_s": images_per_s,
            "latency_p50_ms": 1000 * batch_size / images_per_s}  # fmt: skip


def test_gpu_targets_are_against_onnxruntimes_cuda_provider():
    rows = [_row(BASELINE, 8, 100.0), _row("vggnet fp32", 8, 150.0), _row("vggnet default (bf16)", 8, 300.0),
            _row("vggnet bf16 + torch.compile", 8, 330.0), _row(ORT_CUDA_PATH, 8, 210.0)]  # fmt: skip
    targets = peer_targets(rows)
    assert [(t["target"], t["path"], t["peer"]) for t in targets] == [
        ("default path images/s", "vggnet default (bf16)", ORT_CUDA_PATH),
        ("fastest float path images/s", "vggnet bf16 + torch.compile", ORT_CUDA_PATH),
    ]
    assert [t["ratio"] for t in targets] == [pytest.approx(300 / 210), pytest.approx(330 / 210)]
    assert [t["pass"] for t in targets] == [False, True]  # the limit: 1.5x


def test_the_ceiling_is_larger_work_on_a_gpu():
    assert ceiling_kernels(torch.device("cpu")) == "a 2048^3 matmul and a 256-channel 3x3 convolution at batch 8"
    assert ceiling_kernels(torch.device("cuda")).startswith("a 8192^3 matmul")


def test_compute_ceiling_is_a_rate():
    assert compute_ceiling(torch.float32, torch.device("cpu"), repeats=1) > 0


def test_benchmark_cli_json(trained, fake_ceiling, capsys):
    checkpoint, data = trained
    fake_ceiling(1e6)
    code = main(["benchmark", "--model", str(checkpoint), "--batch-size", "1", "--rounds", "1", "--data", str(data),
                 "--no-training", "--format", "json", "--device", "cpu"])  # fmt: skip
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == str(checkpoint) and report["warnings"] == []
    assert report["img_size"] == 32  # no --img-size: the checkpoint's own
    assert len(report["inference"]) >= 3
    with pytest.raises(SystemExit) as refused:  # a usage error, as the batch sizes are read
        main(["benchmark", "--batch-size", "one"])
    assert refused.value.code == 2
    assert capsys.readouterr().err.startswith(
        "vggnet benchmark: error: argument --batch-size: invalid int value: 'one'"
    )


def test_the_training_rows_time_plain_eager_fp32_against_vggnets_default_path_even_when_that_is_fp32():
    # On a CPU without bf16 the default path's precision is fp32 too; it must still be vggnet's path, not a copy of
    # the baseline (as it was once: both rows then timed the same plain model).
    from vggnet.benchmark.training import make_training_step

    images, labels, cpu = torch.randn(2, 3, 32, 32), torch.tensor([0, 1]), torch.device("cpu")
    baseline = make_training_step("vgg11", "compact", cpu, images, labels)
    default = make_training_step("vgg11", "compact", cpu, images, labels, "fp32")
    model, batch, _, optimizer = baseline.args
    assert type(model) is torch.nn.Sequential and batch.is_contiguous() and not optimizer.defaults["fused"]
    model, batch, _, optimizer = default.args
    assert isinstance(model, vggnet.VGG) and batch.is_contiguous(memory_format=torch.channels_last)
    assert optimizer.defaults["fused"] and default.keywords["precision"] == "fp32"


@pytest.mark.slow
def test_compiled_training_is_timed_beside_the_eager_paths_and_takes_the_same_step(fake_ceiling, monkeypatch):
    fake_ceiling(1e6)
    # oneDNN's convolutions on both sides (not vggnet's CPU training kernels, whose Winograd rounds differently).
    monkeypatch.setattr(cpu_training, "_own_kernels_input", lambda conv, x: None)
    x, y = torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))
    eager, compiled = (make_training_step("vgg11", "compact", torch.device("cpu"), x, y, "fp32", compile=flag)
                       for flag in (False, True))  # fmt: skip
    # The same dropout masks on both sides: inductor draws them as eager does, from the same seed.
    with inductor_config.patch(fallback_random=True):
        for step in (eager, compiled):
            torch.manual_seed(1)
            step()
    # The same fresh model (seeded), data and SGD step: torch.compile changes how it runs, not what it computes
    # (the fused pointwise work and the loss round within a few fp32 ulps; the updates are about 1e-2).
    for ours, reference in zip(compiled.args[0].parameters(), eager.args[0].parameters(), strict=True):
        torch.testing.assert_close(ours, reference, atol=1e-6, rtol=1e-5)

    monkeypatch.setattr(vggnet.benchmark.run, "training_throughput", functools.partial(training_throughput, rounds=1))
    report = benchmark(model="vgg11", batch_sizes=(1,), img_size=32, rounds=1, device="cpu", compile=True)
    fast = resolve_precision("auto", torch.device("cpu"))
    for row in report["training"]:
        assert list(row["images_per_s"]) == ["fp32", f"default ({fast})", f"default ({fast}) + torch.compile"]
        assert row["precisions"][f"default ({fast}) + torch.compile"] == fast
        assert set(row["fraction_of_ceiling"]) == set(row["images_per_s"])
    assert f"default ({fast}) + torch.compile  of ceiling" in render_benchmark(report)
