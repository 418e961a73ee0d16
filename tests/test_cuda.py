"""The model on a CUDA device: parity with torchvision, reduced precision, channels_last, device handling.
Skipped where no GPU is present (CI); run on a GPU machine with `pytest tests/test_cuda.py`."""

import pytest
import torch
import torchvision

import vggnet

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def exact_fp32():
    """Turn TF32 off so that fp32 results are comparable to tight tolerances."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_matches_torchvision_on_cuda(name, exact_fp32):
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)().cuda().eval()
    model = vggnet.create_model(name).cuda().eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(4, 3, 224, 224, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_and_channels_last_stay_close_to_fp32(dtype, exact_fp32):
    torch.manual_seed(0)
    model = vggnet.create_model("vgg16_bn", num_classes=10).cuda().eval()
    x = torch.randn(8, 3, 224, 224, device="cuda")
    with torch.no_grad():
        expected = model(x)
        fast = model.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype):
            got = fast(x.to(memory_format=torch.channels_last))
    assert got.dtype == dtype
    cosine = torch.nn.functional.cosine_similarity(got.float(), expected, dim=1)
    assert cosine.min() > 0.99


def test_training_step_in_bf16_gives_finite_gradients():
    model = vggnet.create_model("vgg11_bn", num_classes=7, head="compact").cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(
            model(torch.randn(16, 3, 32, 32, device="cuda")), torch.randint(0, 7, (16,), device="cuda")
        )
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


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
