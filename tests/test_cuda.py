"""vggnet on a CUDA device: training in bf16 and fp16 (GradScaler), resuming, the inference runner at every
precision against the CPU's fp32, parity with torchvision, device handling, and `--decode device` with nvJPEG.
Skipped where no GPU is present (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""

import shutil

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_image_folder
from PIL import Image

import vggnet
from vggnet.data import Preprocess
from vggnet.data.device_decode import DeviceAugment, collate_encoded, read_for_device
from vggnet.infer.runner import InferenceRunner
from vggnet.infer.source import load_for_inference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

TINY = {"model": "vgg11_bn", "head": "compact", "width_mult": 0.125, "img_size": 32, "batch_size": 8, "workers": 0,
        "lr": 0.05, "device": "cuda"}  # fmt: skip


@pytest.fixture
def exact_fp32():
    """Turn TF32 off so that fp32 results are comparable to tight tolerances."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    """A tiny vgg11_bn trained on the GPU in bf16 for four epochs on three colour classes: (run folder, data)."""
    root = tmp_path_factory.mktemp("cuda")
    data = write_image_folder(root / "data")
    result = vggnet.train(data=str(data), out=str(root / "runs"), precision="bf16", epochs=4, **TINY)
    return result.run_dir, data


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_training_on_cuda_in_reduced_precision(precision, image_folder, tmp_path, capsys):
    result = vggnet.train(data=str(image_folder), out=str(tmp_path / "runs"), precision=precision, epochs=4, **TINY)
    assert f"device cuda, precision {precision} (autocast)" in capsys.readouterr().out
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert last["runtime"] == {"device": "cuda", "precision": precision}
    # Saved from the GPU, loadable on a machine without one.
    assert all(tensor.device.type == "cpu" for tensor in last["state_dict"].values())
    # fp16 steps go through a GradScaler (its state is saved for resuming); bf16 needs none.
    assert bool(last["scaler"]) == (precision == "fp16")
    if precision == "fp16":
        assert 0 < last["scaler"]["scale"] < float("inf")
    losses = [row["train_loss"] for row in last["progress"]["history"]]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert result.best["val_top1"] >= 0.9  # three colours: easy, as on the CPU


def test_a_cuda_run_resumes_on_the_gpu_and_on_the_cpu(cuda_run, tmp_path):
    run, _ = cuda_run
    for device in ("cuda", "cpu"):
        copy = shutil.copytree(run, tmp_path / device)
        result = vggnet.train(resume=copy / "last.pt", epochs=5, device=device)
        assert [row["epoch"] for row in torch.load(copy / "last.pt", weights_only=True)["progress"]["history"]] == [
            1, 2, 3, 4, 5
        ]  # fmt: skip
        assert result.metrics["epoch"] == 5 and torch.isfinite(torch.tensor(result.metrics["train_loss"]))


# The largest difference in a class probability from the CPU's fp32 that each precision's rounding explains:
# fp32 without TF32 (other kernels, other summation order), then weights and activations cast to fp16 (11-bit
# significand) or bf16 (8-bit), with BatchNorm folded into the convolutions.
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 0.03, "auto": 0.03}


@pytest.mark.parametrize("precision", list(TOLERANCES))
def test_inference_on_cuda_agrees_with_fp32_on_the_cpu(cuda_run, precision, exact_fp32):
    run, data = cuda_run
    checkpoint, tolerance = run / "best.pt", TOLERANCES[precision]
    loaded = load_for_inference(checkpoint, device="cuda", precision=precision)
    expected_precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp32") if precision == "auto" else precision
    assert loaded.precision == expected_precision
    runner = InferenceRunner(loaded)
    weight = next(runner.model.parameters())
    assert weight.device.type == "cuda" and weight.dtype == {"fp32": torch.float32, "fp16": torch.float16,
                                                             "bf16": torch.bfloat16}[expected_precision]  # fmt: skip

    images = sorted(str(p) for p in (data / "val").rglob("*.png"))
    reference = vggnet.predict(checkpoint, images, topk=3, device="cpu", precision="fp32")
    records = vggnet.predict(loaded, images, topk=3)
    decided = 0
    for record, exact in zip(records, reference, strict=True):
        probs = {top["class"]: top["prob"] for top in record["top"]}
        for top in exact["top"]:
            assert probs[top["class"]] == pytest.approx(top["prob"], abs=tolerance), (record["path"], top)
        # Where the CPU's first two classes are further apart than the rounding can move them, the top-1 agrees.
        if exact["top"][0]["prob"] - exact["top"][1]["prob"] > 2 * tolerance:
            decided += 1
            assert record["top"][0]["class"] == exact["top"][0]["class"], record["path"]
    assert decided >= len(images) // 2  # a trained model: most images are clear-cut

    on_gpu = vggnet.evaluate(loaded, data)
    on_cpu = vggnet.evaluate(checkpoint, data, device="cpu", precision="fp32")
    assert on_gpu["num_images"] == on_cpu["num_images"] == len(images)
    assert round(abs(on_gpu["top1"] - on_cpu["top1"]) * len(images)) <= len(images) - decided  # only close calls


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_matches_torchvision_on_cuda(name, exact_fp32):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().cuda().eval()
    model = vggnet.create_model(name).cuda().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)


def test_features_summary_and_reset_on_cuda(tmp_path):
    model = vggnet.create_model("vgg16", num_classes=5, head="compact").cuda().eval()
    feats = vggnet.extract_features(model, torch.randn(2, 3, 64, 64, device="cuda"), ["relu1_2", "relu4_3"])
    assert feats["relu4_3"].device.type == "cuda" and feats["relu4_3"].shape == (2, 512, 8, 8)
    assert (
        vggnet.summarize(model, 64).to_dict() == vggnet.summarize("vgg16", 64, num_classes=5, head="compact").to_dict()
    )
    half = model.half()
    half.reset_classifier(3)
    assert half.classifier[-1].weight.device.type == "cuda" and half.classifier[-1].weight.dtype == torch.float16
    path = tmp_path / "w.pth"
    torch.save(model.state_dict(), path)
    fresh = vggnet.create_model("vgg16", num_classes=3, head="compact").cuda()
    report = vggnet.load_weights(fresh, path)
    assert report.skipped == [] and fresh.features[0].weight.device.type == "cuda"


def test_decoding_on_the_gpu_matches_the_cpu_and_trains(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate([(48, 32), (32, 48), (40, 40)]):
        y, x = np.mgrid[0 : size[1], 0 : size[0]] / 48
        pixels = np.stack([rng.uniform(40, 200) + 50 * x, rng.uniform(40, 200) + 50 * y, 120 + 40 * x * y], -1)
        paths.append(tmp_path / f"{index}.jpg")
        Image.fromarray(pixels.astype(np.uint8)).save(paths[-1], quality=95)
    images, labels, _ = collate_encoded([(read_for_device(path), i) for i, path in enumerate(paths)])
    preprocess = Preprocess(img_size=32, resize=32, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    on_gpu, gpu_labels = DeviceAugment(preprocess, "none", torch.device("cuda"))(images, labels, seed=0)
    on_cpu, _ = DeviceAugment(preprocess, "none", torch.device("cpu"))(images, labels, seed=0)
    assert on_gpu.device.type == "cuda" and gpu_labels.tolist() == [0, 1, 2]
    # nvJPEG and libjpeg-turbo round their inverse DCTs and colour conversion differently: a few levels of 255.
    torch.testing.assert_close(on_gpu.cpu(), on_cpu, atol=6 / 255, rtol=0)

    data = write_image_folder(tmp_path / "data", suffix=".jpg")
    result = vggnet.train(data=str(data), out=str(tmp_path / "runs"), precision="bf16", epochs=4, decode="device",
                          **{**TINY, "augment": "basic"})  # fmt: skip
    assert result.best["val_top1"] >= 0.9


def test_gpu_decoding_leaves_memory_still_in_use_alone(tmp_path):
    # nvJPEG's hardware decoder writes its outputs before the work queued on its stream has run (pytorch/vision
    # #9606): decoding on the training's stream can overwrite memory that queued kernels still read.
    rng = np.random.default_rng(0)
    paths = []
    for index in range(8):
        paths.append(tmp_path / f"{index}.jpg")
        Image.fromarray(rng.integers(0, 255, size=(64, 64, 3), dtype=np.uint8)).save(paths[-1], quality=95)
    images, labels, _ = collate_encoded([(read_for_device(path), i) for i, path in enumerate(paths)])
    augment = DeviceAugment(Preprocess(img_size=64, resize=64), "none", torch.device("cuda"))
    expected = augment(images, labels, seed=0)[0].cpu()
    for _ in range(20):
        in_use = [torch.full((3, 64, 64), value, dtype=torch.uint8, device="cuda") for value in range(8)]
        torch.cuda._sleep(20_000_000)  # queued work ahead of the sums
        sums = [tensor.sum() for tensor in in_use]
        del in_use  # freed while the sums that read them are still queued
        batch, _ = augment(images, labels, seed=0)
        assert [int(total) for total in sums] == [value * 3 * 64 * 64 for value in range(8)]
        assert torch.equal(batch.cpu(), expected)
