"""Loading local weights files: torchvision's, DDP's, trainers', vggnet's and safetensors; heads that differ;
files that are damaged, foreign or carry pickled code."""

import logging
import os
import re
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import vggnet
from vggnet.models.loading import CHECKPOINT_FORMAT, read_weights_file


def tiny(name="vgg11", **kwargs):
    kwargs = {"head": "compact", "width_mult": 0.125, **kwargs}
    return vggnet.create_model(name, **kwargs).eval()


def same_tensors(a, b, prefix=""):
    keys = [k for k in a.state_dict() if k.startswith(prefix)]
    return keys and all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in keys)


def test_torchvision_state_dict_file_gives_torchvisions_outputs(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.vgg11().eval()
    path = tmp_path / "vgg11_torchvision.pth"
    torch.save(reference.state_dict(), path)
    model = vggnet.create_model("vgg11", checkpoint_path=path).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), atol=1e-5, rtol=1e-5)
    assert model.pretrained_cfg["source"] == str(path)


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_are_stripped(tmp_path, prefix):
    source = tiny("vgg11_bn", num_classes=3)
    path = tmp_path / "ddp.pt"
    torch.save({prefix + k: v for k, v in source.state_dict().items()}, path)
    model = tiny("vgg11_bn", num_classes=3, checkpoint_path=path)
    assert same_tensors(model, source)


def test_vggnet_checkpoint_brings_its_classes_and_preprocessing(tmp_path):
    source = tiny(num_classes=2)
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "version": 1,
        "model": {"name": "vgg11", "kwargs": source.model_kwargs},
        "state_dict": source.state_dict(),
        "classes": ["cat", "dog"],
        "preprocess": {"img_size": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "interpolation": "bilinear"},
        "epoch": 3,
        "metrics": {"val_top1": 0.5},
    }
    path = tmp_path / "best.pt"
    torch.save(checkpoint, path)
    model = tiny(num_classes=2, checkpoint_path=path)
    assert same_tensors(model, source)
    assert model.pretrained_cfg["classes"] == ["cat", "dog"]
    assert model.pretrained_cfg["preprocess"]["img_size"] == 32
    # Another class count: the classes no longer describe the outputs.
    assert "classes" not in tiny(num_classes=5, checkpoint_path=path).pretrained_cfg


def test_trainer_dict_with_optimizer_state(tmp_path):
    source = tiny(num_classes=4)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "trainer.pth"
    torch.save({"model": source.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 7}, path)
    assert same_tensors(tiny(num_classes=4, checkpoint_path=path), source)


def test_safetensors_file(tmp_path):
    source = tiny("vgg13_bn", num_classes=4)
    path = tmp_path / "weights.safetensors"
    save_file(source.state_dict(), str(path))
    assert same_tensors(tiny("vgg13_bn", num_classes=4, checkpoint_path=path), source)


@pytest.mark.parametrize("name", ["weights.st", "weights.bin", "weights"])
def test_safetensors_files_are_recognised_by_content_whatever_their_name(tmp_path, name):
    source = tiny("vgg11_bn", num_classes=4)
    path = tmp_path / name
    save_file(source.state_dict(), str(path))
    assert same_tensors(tiny("vgg11_bn", num_classes=4, checkpoint_path=path), source)


@pytest.mark.parametrize("format", ["torchscript", "onnx"])
def test_an_export_is_named_for_what_it_is_not_called_damaged(tmp_path, recwarn, format):
    """TorchScript and ONNX files are recognised by content and refused with the file to pass instead: no torch
    warning, no advice to load with weights_only=False (which would run the archive's code)."""
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    model = tiny(num_classes=3)
    exported = vggnet.export(model, format, out=tmp_path / "best.export", img_size=32).path  # any name
    kind = {"torchscript": "TorchScript", "onnx": "ONNX"}[format]
    message = (
        f"^{re.escape(str(exported))} is an export to {kind} \\(as `vggnet export --format {format}` writes\\); vggnet "
        f"loads checkpoints \\(best.pt, last.pt\\) and weights files \\(.pth, .pt, .safetensors\\): pass the "
        f"checkpoint it was exported from$"
    )
    with pytest.raises(ValueError, match=message):
        vggnet.load_for_inference(exported, device="cpu")  # --model
    with pytest.raises(ValueError, match=message):
        vggnet.load_model(exported)
    with pytest.raises(ValueError, match=message):
        tiny(num_classes=3, checkpoint_path=exported)  # --pretrained
    assert not [warning for warning in recwarn if "TorchScript" in str(warning.message)]


def test_other_class_count_loads_all_but_the_last_layer(tmp_path, caplog):
    torch.manual_seed(0)
    source = vggnet.create_model("vgg11", num_classes=10, width_mult=0.125)
    path = tmp_path / "ten_classes.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="vggnet"):
        model = vggnet.create_model("vgg11", num_classes=7, width_mult=0.125, checkpoint_path=path)
    assert same_tensors(model, source, "features.")
    for key in ["classifier.0.weight", "classifier.3.weight", "classifier.3.bias"]:
        assert torch.equal(model.state_dict()[key], source.state_dict()[key])
    assert model.classifier[6].weight.shape == (7, 4096)
    assert model.classifier[6].weight.std().item() == pytest.approx(0.01, rel=0.05)  # fresh kaiming init
    [record] = [r for r in caplog.records if r.name == "vggnet"]
    assert record.levelno == logging.WARNING
    assert "\n" not in record.getMessage()
    assert "freshly initialised classifier.6.weight, classifier.6.bias" in record.getMessage()


def test_classic_weights_into_a_compact_head(tmp_path):
    source = vggnet.create_model("vgg11", width_mult=0.125)
    path = tmp_path / "classic.pth"
    torch.save(source.state_dict(), path)
    model = tiny(num_classes=3)
    report = vggnet.load_weights(model, path)
    assert same_tensors(model, source, "features.")
    assert report.skipped == ["classifier.1.weight", "classifier.1.bias"]
    assert len(report.loaded) == len([k for k in source.state_dict() if k.startswith("features.")])


def test_features_only_weights_leave_the_head_fresh(tmp_path):
    source = tiny()
    path = tmp_path / "features.pth"
    torch.save({k: v for k, v in source.state_dict().items() if k.startswith("features.")}, path)
    report = vggnet.load_weights(tiny(), path)
    assert report.skipped == ["classifier.1.weight", "classifier.1.bias"]


def test_old_batchnorm_files_without_batch_counters_load(tmp_path):
    source = tiny("vgg11_bn")
    path = tmp_path / "old.pth"
    torch.save({k: v for k, v in source.state_dict().items() if "num_batches_tracked" not in k}, path)
    model = tiny("vgg11_bn", checkpoint_path=path)
    assert same_tensors(model, source, "features.0.")
    assert model.features[1].num_batches_tracked.dtype == torch.long and model.features[1].num_batches_tracked == 0


def test_a_model_built_for_weights_takes_them_and_initialises_the_rest(tmp_path):
    """`create_model` with weights fills a model whose tensors were never allocated: every tensor ends up real,
    in float32 whatever the file's dtype, trainable, and the layers the file lacks initialised by the model's own
    scheme (here Xavier's, not torchvision's N(0, 0.01))."""
    torch.manual_seed(0)
    source = vggnet.create_model("vgg11", num_classes=10, width_mult=0.125)
    path = tmp_path / "half.safetensors"
    save_file({k: v.half() for k, v in source.state_dict().items()}, path)
    model = vggnet.create_model("vgg11", num_classes=7, width_mult=0.125, init="xavier", checkpoint_path=path)
    tensors = [*model.parameters(), *model.buffers()]
    assert not any(t.is_meta for t in tensors) and all(t.dtype == torch.float32 for t in tensors)
    assert all(isinstance(p, torch.nn.Parameter) and p.requires_grad for p in model.parameters())
    assert torch.equal(model.features[0].weight, source.features[0].weight.half().float())
    fresh = model.classifier[6]
    xavier_std = (2 / (fresh.in_features + fresh.out_features)) ** 0.5
    assert fresh.weight.std().item() == pytest.approx(xavier_std, rel=0.05)
    assert not fresh.bias.any()
    before = model.features[0].weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert not torch.equal(model.features[0].weight, before)  # the loaded tensors are the ones trained


@pytest.mark.parametrize("in_chans", [1, 6])
def test_first_convolution_adapts_to_other_channel_counts(tmp_path, in_chans):
    torch.manual_seed(0)
    source = tiny()
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    model = tiny(in_chans=in_chans)
    report = vggnet.load_weights(model, path)
    assert report.adapted == ["features.0.weight"]
    assert same_tensors(model, source, "features.3.")
    # A grey image gives the same first-layer response as the RGB model on the grey image repeated.
    grey = torch.rand(1, 1, 32, 32)
    expected = source.features[0](grey.expand(1, 3, 32, 32))
    torch.testing.assert_close(model.features[0](grey.expand(1, in_chans, 32, 32)), expected, atol=1e-5, rtol=1e-4)


def test_first_convolution_for_two_channels_tiles_and_rescales(tmp_path):
    source = tiny()
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    model = tiny(in_chans=2, checkpoint_path=path)
    torch.testing.assert_close(model.features[0].weight, source.features[0].weight[:, :2] * 1.5)


def test_weights_of_another_depth_name_the_variant_they_fit(tmp_path):
    path = tmp_path / "vgg11.pth"
    torch.save(vggnet.create_model("vgg11", head="compact").state_dict(), path)
    with pytest.raises(ValueError, match=r"do not fit vgg16: .*create the model as 'vgg11'"):
        vggnet.create_model("vgg16", head="compact", checkpoint_path=path)
    bn_path = tmp_path / "vgg13_bn.pth"
    torch.save(vggnet.create_model("vgg13_bn", head="compact").state_dict(), bn_path)
    with pytest.raises(ValueError, match=r"do not fit vgg13: .*create the model as 'vgg13_bn'"):
        vggnet.create_model("vgg13", head="compact", checkpoint_path=bn_path)


def test_weights_of_another_width_are_refused(tmp_path):
    path = tmp_path / "narrow.pth"
    torch.save(tiny().state_dict(), path)
    with pytest.raises(ValueError, match=r"features.0.weight has shape \(8, 3, 3, 3\)"):
        vggnet.create_model("vgg11", head="compact", checkpoint_path=path)


class _Payload:
    """Unpickling this object creates a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": tiny().state_dict(), "extra": _Payload(str(marker))}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.pth: it holds pickled Python objects"):
        tiny(checkpoint_path=path)
    assert not marker.exists()
    # The same payload unpickled without protection would have run: the test's premise holds.
    with open(path, "rb"):
        torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable PyTorch checkpoint"),
        (b"<html>not found</html>", "not a readable PyTorch checkpoint"),
    ],
)
def test_damaged_files_are_refused(tmp_path, content, message):
    path = tmp_path / "weights.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_weights_file(path)


def test_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(tiny().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        tiny(checkpoint_path=path)


def test_damaged_safetensors_is_refused(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(os.urandom(64))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        tiny(checkpoint_path=path)


@pytest.mark.parametrize("obj", [[1, 2, 3], {"epoch": 3}, {}])
def test_files_without_a_state_dict_are_refused(tmp_path, obj):
    path = tmp_path / "other.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match="holds no state dict of tensors"):
        tiny(checkpoint_path=path)


def test_missing_file_and_unknown_tag():
    with pytest.raises(ValueError, match=r"^no such file: nowhere/vgg.pth \(there is no folder nowhere\)$"):
        tiny(checkpoint_path="nowhere/vgg.pth")
    with pytest.raises(ValueError, match="unknown pretrained weights 'imagenet21k' for vgg11; choose one of: imagenet"):
        tiny(pretrained="imagenet21k")


def test_a_tag_is_never_taken_for_a_file_nor_a_file_for_a_tag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save(tiny().state_dict(), tmp_path / "imagenet")
    with pytest.raises(ValueError, match="^no such file: imagenet21k; check the path$"):
        tiny(checkpoint_path="imagenet21k")  # checkpoint_path is always a file
    with pytest.raises(ValueError, match="^no such file: nowhere/vgg.pth .*; pretrained= takes a weights tag such as "
                       "'imagenet', checkpoint_path= a file$"):  # fmt: skip
        tiny(pretrained="nowhere/vgg.pth")
    with pytest.raises(ValueError, match="pretrained='imagenet' and checkpoint_path='imagenet' both name weights"):
        tiny(pretrained="imagenet", checkpoint_path="imagenet")


def test_a_file_given_as_pretrained_is_refused_with_the_keyword_to_use(tmp_path):
    source = tiny(num_classes=3)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    with pytest.raises(ValueError, match="is a file: pass weights files as checkpoint_path="):
        tiny(num_classes=3, pretrained=str(path))
    assert same_tensors(tiny(num_classes=3, checkpoint_path=path), source)


def test_a_users_weights_value_becomes_the_right_keyword(tmp_path, monkeypatch):
    from vggnet.models.loading import weights_keyword

    monkeypatch.chdir(tmp_path)
    torch.save(tiny().state_dict(), tmp_path / "imagenet")
    assert weights_keyword(None) == {}
    assert weights_keyword("imagenet") == {"pretrained": "imagenet"}  # the tag, though a file has its name
    assert weights_keyword("./imagenet") == {"checkpoint_path": Path("imagenet")}
    assert weights_keyword(tmp_path / "imagenet") == {"checkpoint_path": tmp_path / "imagenet"}
    assert weights_keyword("imagenet21k") == {"pretrained": "imagenet21k"}  # an unknown tag, for the table to name
    with pytest.raises(ValueError, match="^no such file: runs/best.pt"):
        weights_keyword("runs/best.pt")


@pytest.mark.parametrize(
    ("text", "is_path"),
    [
        ("runs/train/exp/best.pt", True),
        ("best.pt", True),
        ("model.int8.pt", True),
        ("weights.pth", True),
        ("export.safetensors", True),
        ("./imagenet", True),
        ("~/weights", True),
        (".hidden", True),
        ("imagenet", False),
        ("vgg16_bn", False),
        ("imagenet21k", False),
    ],
)
def test_what_looks_like_a_path(text, is_path):
    from vggnet.models.loading import looks_like_path

    assert looks_like_path(text) is is_path


def test_a_misspelt_path_suggests_the_file_beside_it(tmp_path):
    torch.save(tiny().state_dict(), tmp_path / "best.pt")
    (tmp_path / "best.png").write_bytes(b"an image, not weights: never suggested")
    folder = re.escape(str(tmp_path))
    with pytest.raises(ValueError, match=f"^no such file: {folder}/bset.pt; did you mean {folder}/best.pt\\?$"):
        tiny(checkpoint_path=str(tmp_path / "bset.pt"))
    with pytest.raises(ValueError, match=f"^no such file: {folder}/other.pth; check the path$"):
        tiny(checkpoint_path=tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"^{folder} is a folder, not a weights file; pass a weights file in it: best"):
        tiny(checkpoint_path=tmp_path)
    with pytest.raises(ValueError, match=f"^no such file: {folder}/bset.pt; did you mean"):
        vggnet.load_model(tmp_path / "bset.pt")
