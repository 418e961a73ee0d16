"""Using a trained model: eval, predict, embed, feature maps, Grad-CAM and export, on a tiny trained checkpoint."""

import json
import os
import re
import shutil
import stat
import sys

import numpy as np
import pytest
import torch
import torchvision
from conftest import write_image_folder
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

import vggnet
from vggnet.cli import main
from vggnet.data import Preprocess, discover_splits, load_rgb
from vggnet.infer import export as export_module
from vggnet.infer.embed import embed
from vggnet.infer.evaluate import evaluate
from vggnet.infer.export import export
from vggnet.infer.predict import predict
from vggnet.infer.quantize import quantize
from vggnet.infer.source import inference_ready, load_for_inference
from vggnet.infer.visualize import feature_grid, grad_cam, save_grad_cam


def _transform_of(model):
    """The evaluation transform of the preprocessing that came with a model's weights."""
    return Preprocess.from_checkpoint(model.pretrained_cfg["preprocess"]).transform()


def _manual_predictions(checkpoint, paths):
    """The model's outputs computed by hand, image by image: the reference for the batch verbs."""
    model = vggnet.load_model(checkpoint).eval()
    transform = _transform_of(model)
    with torch.no_grad():
        return torch.cat([model(transform(load_rgb(p))[None]) for p in paths])


# ---- eval --------------------------------------------------------------------------------------------------


def test_eval_matches_a_hand_computed_reference(trained, tmp_path):
    checkpoint, data = trained
    report = evaluate(checkpoint, data, batch_size=5, out=tmp_path / "eval", precision="fp32")
    samples = discover_splits(data).val  # data/ has val/: that is what eval reads
    logits = _manual_predictions(checkpoint, [p for p, _ in samples])
    truth = np.array([label for _, label in samples])
    predicted = logits.argmax(dim=1).numpy()
    assert report["num_images"] == len(samples) == 12
    assert report["top1"] == pytest.approx((predicted == truth).mean())
    assert report["top5"] == 1.0  # three classes
    expected_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(truth)).item()
    assert report["loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert report["confusion_matrix"] == confusion_matrix(truth, predicted, labels=[0, 1, 2]).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=[0, 1, 2], zero_division=0
    )
    for i, name in enumerate(["ant", "bee", "cat"]):
        scores = report["per_class"][name]
        assert scores["precision"] == pytest.approx(precision[i])
        assert scores["recall"] == pytest.approx(recall[i])
        assert scores["f1"] == pytest.approx(f1[i])
        assert scores["support"] == support[i]
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {
        "confusion_matrix.png", "confusion_matrix.csv", "metrics.json"
    }  # fmt: skip
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["top1"] == report["top1"]
    csv_lines = (tmp_path / "eval" / "confusion_matrix.csv").read_text().splitlines()
    assert csv_lines[0] == "true \\ predicted,ant,bee,cat" and len(csv_lines) == 4


def test_eval_refuses_a_folder_with_other_classes(trained, tmp_path):
    checkpoint, _ = trained
    other = write_image_folder(tmp_path / "other", classes=("ant", "bee", "dog"), split=False)
    with pytest.raises(ValueError, match=r"missing: \['cat'\]; not the model's: \['dog'\]"):
        evaluate(checkpoint, other)


def test_eval_refuses_a_batch_size_below_1_first_as_predict_and_embed_do(trained, tmp_path):
    checkpoint, data = trained
    with pytest.raises(ValueError, match=r"^--batch-size must be at least 1, got 0$"):
        evaluate(checkpoint, data, batch_size=0, out=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()  # refused before the output folder is made


def test_eval_on_some_of_the_classes(trained, tmp_path, caplog):
    checkpoint, _ = trained
    some = write_image_folder(tmp_path / "some", classes=("ant", "bee"), split=False)
    with caplog.at_level("WARNING", logger="vggnet"):
        report = evaluate(checkpoint, some)
    assert "evaluating on 2 of the model's 3 classes (no folder for: cat)" in caplog.text
    assert report["num_images"] == 16 and report["classes"] == ["ant", "bee", "cat"]
    assert [report["per_class"][name]["support"] for name in ("ant", "bee", "cat")] == [8, 8, 0]
    text = vggnet.infer.evaluate.render_report(report)
    assert "\ncat " not in text and "(1 of the model's classes had no images and are not listed)" in text


def test_eval_on_one_class(trained, tmp_path):
    """One class of the model's is a fair evaluation: top-1 is the share of its images predicted as it."""
    checkpoint, _ = trained
    # Red images, which the model learned as "ant", in a folder named "bee": most go to another class.
    bees = write_image_folder(tmp_path / "bees", classes=("bee",), split=False)
    report = evaluate(checkpoint, bees, precision="fp32", out=tmp_path / "eval")
    paths = sorted((bees / "bee").glob("*.png"))
    predicted = _manual_predictions(checkpoint, paths).argmax(dim=1)
    hits = int((predicted == 1).sum())
    assert report["num_images"] == 8 and report["evaluated_classes"] == ["bee"]
    assert report["top1"] == hits / 8 and report["top5"] == 1.0  # three classes: all in the top 5
    assert report["per_class"]["bee"] == {
        "precision": 1.0 if hits else 0.0, "recall": hits / 8, "f1": pytest.approx(2 * hits / (8 + hits)), "support": 8
    }  # fmt: skip
    # The CSV, like the picture, has the evaluated class, and the predictions of the others in one column.
    assert (tmp_path / "eval" / "confusion_matrix.csv").read_text().splitlines() == [
        "true \\ predicted,bee,(other)", f"bee,{hits},{8 - hits}"
    ]  # fmt: skip
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["confusion_matrix"][1] == [
        int((predicted == c).sum()) for c in range(3)
    ]  # the JSON keeps every class's column
    with pytest.raises(ValueError, match="has 0 class folder.*there is nothing to evaluate"):
        evaluate(checkpoint, bees / "bee")


def test_eval_of_an_imagenet_model_on_folders_named_by_wordnet_id(tmp_path):
    """ImageNet's validation folders are named by WordNet id; each maps to its class index (checked on known ids)."""
    from vggnet.infer.source import LoadedModel

    wordnet = {"n01440764": 0, "n02012849": 134, "n03126707": 517, "n15075141": 999}  # tench, crane bird, crane, ...
    data = write_image_folder(tmp_path / "val", classes=tuple(wordnet), per_class=2, split=False)
    torch.manual_seed(0)
    network = vggnet.create_model("vgg11", width_mult=0.125).eval()
    preprocess = Preprocess.imagenet(32, crop_pct=1.0)
    classes = vggnet.imagenet_categories()
    loaded = LoadedModel(network, classes, preprocess, torch.device("cpu"), "fp32", "random vgg11")
    report = evaluate(loaded, data)
    assert [classes[i] for i in wordnet.values()] == ["tench", "crane bird", "crane", "toilet tissue"]
    assert {name: s["support"] for name, s in report["per_class"].items() if s["support"]} == {
        "tench": 2, "crane bird": 2, "crane": 2, "toilet tissue": 2
    }  # fmt: skip
    transform = preprocess.transform()
    images = sorted(data.glob("*/*.png"))
    with torch.no_grad():
        predicted = network(torch.stack([transform(load_rgb(path)) for path in images])).argmax(1)
    truth = torch.tensor([wordnet[path.parent.name] for path in images])
    assert report["top1"] == pytest.approx((predicted == truth).float().mean().item())
    with pytest.raises(ValueError, match=r"not the model's: \['n99999999'\].*WordNet ids"):
        evaluate(loaded, write_image_folder(tmp_path / "bad", classes=("n01440764", "n99999999"), split=False))


def test_eval_cli_json(trained, tmp_path, capsys):
    checkpoint, data = trained
    code = main(["eval", "--model", str(checkpoint), "--data", str(data), "--format", "json", "--out", str(tmp_path)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "loss", "num_images", "per_class", "confusion_matrix"} <= report.keys()


# ---- predict -----------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_inputs(trained, tmp_path):
    """Good images (a file, a folder, a glob), a corrupt file, a text file and a missing path."""
    _, data = trained
    good = sorted((data / "val" / "bee").glob("*.png"))
    folder = tmp_path / "folder"
    (folder / "nested").mkdir(parents=True)
    Image.open(good[0]).save(folder / "nested" / "one.png")
    (folder / ".DS_Store").write_bytes(b"\0")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good[1].read_bytes()[:30])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    inputs = [str(good[2]), str(folder), str(data / "val" / "cat" / "*.png"), str(corrupt), str(text), "missing.png"]
    return inputs


def test_predict_records_errors_and_order(trained, mixed_inputs):
    checkpoint, data = trained
    records = predict(checkpoint, mixed_inputs, topk=2, batch_size=3, precision="fp32")
    cats = sorted(str(p) for p in (data / "val" / "cat").glob("*.png"))
    assert [r["path"] for r in records][:2] == [mixed_inputs[0], str(mixed_inputs[1] + "/nested/one.png")]
    assert [r["path"] for r in records][2:6] == cats
    errors = {r["path"]: r["error"] for r in records if "error" in r}
    assert set(errors) == {mixed_inputs[3], mixed_inputs[4], "missing.png"}
    assert errors["missing.png"] == "no such file or folder"
    good = [r for r in records if "top" in r]
    assert len(good) == 6
    reference = _manual_predictions(checkpoint, [r["path"] for r in good]).softmax(dim=1)
    for record, probs in zip(good, reference, strict=True):
        assert [t["index"] for t in record["top"]] == probs.argsort(descending=True)[:2].tolist()
        assert record["top"][0]["prob"] == pytest.approx(probs.max().item(), abs=1e-5)
        assert record["top"][0]["class"] == ["ant", "bee", "cat"][record["top"][0]["index"]]
        assert record["top"][0]["prob"] >= record["top"][1]["prob"]


def test_decoding_workers_default_to_the_spare_cores_for_more_than_one_batch(monkeypatch):
    from vggnet import runtime

    monkeypatch.setattr(runtime, "default_workers", lambda: 3)
    assert runtime.loader_workers(None, images=9, batch_size=8) == 3
    assert runtime.loader_workers(None, images=8, batch_size=8) == 0  # one batch: no process to start
    assert runtime.loader_workers(2, images=1, batch_size=8) == 2  # as asked
    # for Python callers: the CLI refuses -1 as it reads --workers (test_cli.py)
    with pytest.raises(ValueError, match=r"^--workers must be 0 \(decode in this process\) or more, got -1$"):
        runtime.loader_workers(-1, images=9, batch_size=8)


def test_predict_cli_exit_codes_and_formats(trained, mixed_inputs, tmp_path, capsys):
    checkpoint, _ = trained
    assert main(["predict", "--model", str(checkpoint), mixed_inputs[0], "--format", "json"]) == 0
    [record] = json.loads(capsys.readouterr().out)
    assert set(record) == {"path", "top"} and len(record["top"]) == 3  # topk 5 clamped to 3 classes
    assert set(record["top"][0]) == {"class", "index", "prob"}
    assert main(["predict", "--model", str(checkpoint), *mixed_inputs, "--format", "csv"]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "path,rank,class,index,prob,error"
    assert "missing.png,,,,,no such file or folder" in captured.out
    assert "3 of 9 input(s) failed" in captured.err
    viz = tmp_path / "viz"
    assert main(["predict", "--model", str(checkpoint), mixed_inputs[0], "--save-viz", str(viz)]) == 0
    [picture] = list(viz.iterdir())
    assert Image.open(picture).size == (256, 256)  # a 20x20 image, enlarged so the text is legible


def test_saved_visualisations_keep_the_input_format(trained, tmp_path):
    checkpoint, data = trained
    source = Image.open(sorted((data / "val" / "ant").glob("*.png"))[0])
    inputs = [tmp_path / "photo.jpg", tmp_path / "scan.PNG", tmp_path / "photo.png", tmp_path / "noext"]
    for path, format in zip(inputs, ["JPEG", "PNG", "PNG", "PNG"], strict=True):
        source.save(path, format=format)
    predict(checkpoint, inputs, save_viz=tmp_path / "viz")
    written = {path.name: Image.open(path).format for path in (tmp_path / "viz").iterdir()}
    # A name without a suffix (a format Pillow cannot write, likewise) becomes PNG.
    assert written == {"photo.jpg": "JPEG", "scan.PNG": "PNG", "photo.png": "PNG", "noext.png": "PNG"}


def test_a_predictor_loads_once_for_many_calls(trained):
    checkpoint, data = trained
    predictor = vggnet.Predictor(checkpoint, precision="fp32", batch_size=4)
    assert predictor.classes == ["ant", "bee", "cat"]
    images = sorted(str(p) for p in (data / "val").rglob("*.png"))
    first, second = predictor(images, topk=1), predictor(images[:2], topk=2)
    # The same computation (same batches) gives the same numbers, whichever object runs it.
    assert first == predict(checkpoint, images, topk=1, precision="fp32", batch_size=4)
    # Another batch size changes only the rounding of fp32 sums (the convolution kernels differ with the batch).
    default_batches = predict(checkpoint, images, topk=1, precision="fp32")
    for records, reference in [(second, first[:2]), (default_batches, first)]:
        assert [r["top"][0]["class"] for r in records] == [r["top"][0]["class"] for r in reference]
        for record, expected in zip(records, reference, strict=True):
            assert record["top"][0]["prob"] == pytest.approx(expected["top"][0]["prob"], abs=1e-5)


def test_summary_of_a_checkpoint(trained, capsys):
    checkpoint, _ = trained
    assert main(["summary", str(checkpoint), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "vgg11_bn" and report["input_size"] == 32 and report["num_classes"] == 3
    assert report["total_params"] == sum(p.numel() for p in vggnet.load_model(checkpoint).parameters())


def test_predict_needs_weights_for_a_model_name(trained):
    with pytest.raises(ValueError, match="--model vgg16 has random weights; add --pretrained imagenet"):
        predict("vgg16", ["x.png"])
    with pytest.raises(ValueError, match="^no such file: vgg17.pt; check the path$"):
        predict("vgg17.pt", ["x.png"])  # looks like a path: said so, not "neither ... nor a model name"
    with pytest.raises(ValueError, match="'vgg17' is neither a checkpoint file nor a model name; did you mean 'vgg1"):
        predict("vgg17", ["x.png"])


def test_a_misspelt_checkpoint_path_suggests_the_file_beside_it(trained):
    checkpoint, _ = trained
    misspelt = checkpoint.with_name("bets.pt")
    with pytest.raises(ValueError, match=f"^no such file: {re.escape(str(misspelt))}; did you mean .*/best.pt\\?$"):
        predict(misspelt, ["x.png"])
    run_dir = checkpoint.parent
    with pytest.raises(ValueError, match=f"{re.escape(str(run_dir))} is a folder, not a weights file; pass a weights"):
        predict(str(run_dir), ["x.png"])


def test_a_users_own_model_is_left_as_it_was(trained, tmp_path):
    checkpoint, data = trained
    model = vggnet.load_model(checkpoint)  # in train mode, contiguous, on the CPU: as a user may hold it
    before = {key: value.clone() for key, value in model.state_dict().items()}
    images = sorted(str(p) for p in (data / "val").rglob("*.png"))

    def unchanged():
        assert all(module.training for module in model.modules())
        for key, value in model.state_dict().items():  # parameters and BatchNorm's running statistics
            assert value.device.type == "cpu" and value.is_contiguous(), key
            assert torch.equal(value, before[key]), key

    records = predict(model, images, precision="fp32", device="cpu")
    unchanged()
    # ... and it ran in eval mode (on a copy): the same results as the checkpoint's
    assert records == predict(checkpoint, images, precision="fp32", device="cpu")
    predict(model, images[:2], device="cpu")  # the default precision (a low-precision copy where native)
    unchanged()
    evaluate(model, data, precision="fp32", device="cpu")
    unchanged()
    embed(model, images[:2], precision="fp32", device="cpu")
    unchanged()
    feature_grid(model, images[0], "conv1_1", tmp_path / "grid.png", device="cpu")
    unchanged()
    grad_cam(model, images[0], device="cpu")
    unchanged()
    export(model, "torchscript", out=tmp_path / "m.torchscript.pt")
    unchanged()


def test_a_model_ready_for_inference_is_used_as_it_is(trained):
    checkpoint, _ = trained
    ready = vggnet.load_model(checkpoint).eval().to(memory_format=torch.channels_last)
    assert inference_ready(ready, torch.device("cpu")) is ready
    assert load_for_inference(ready, device="cpu").model is ready  # no copy of a large model needlessly
    assert inference_ready(ready.train(), torch.device("cpu")) is not ready


def test_every_verb_takes_a_loaded_model_without_loading_again(trained, tmp_path, monkeypatch):
    checkpoint, data = trained
    loaded = load_for_inference(checkpoint, device="cpu", precision="fp32")
    assert load_for_inference(loaded) is loaded
    assert loaded.preprocess == Preprocess.from_checkpoint(torch.load(checkpoint, weights_only=True)["preprocess"])

    def load_again(*args, **kwargs):
        pytest.fail("a loaded model was loaded again")

    monkeypatch.setattr("vggnet.infer.source.read_weights_file", load_again)
    image = sorted((data / "val" / "ant").glob("*.png"))[0]
    assert predict(loaded, [image], topk=1)[0]["top"][0]["class"] in loaded.classes
    assert embed(loaded, [image]).features.shape[0] == 1
    assert grad_cam(loaded, image).class_name in loaded.classes
    assert feature_grid(loaded, image, "conv1_1", tmp_path / "grid.png").exists()
    assert evaluate(loaded, data)["num_images"] == 12
    assert export(loaded, "torchscript", out=tmp_path / "m.torchscript.pt").input_size == loaded.preprocess.img_size


def test_a_damaged_preprocessing_record_names_the_file(trained, tmp_path):
    checkpoint, _ = trained
    content = torch.load(checkpoint, weights_only=True)
    content["preprocess"]["std"] = [0.2, 0.0, 0.2]
    damaged = tmp_path / "damaged.pt"
    torch.save(content, damaged)
    with pytest.raises(ValueError, match=f"^{re.escape(str(damaged))}: preprocess std=.* must be positive"):
        load_for_inference(damaged, device="cpu")


def test_imagenet_weights_give_imagenet_class_names(hub_dir, file_server, monkeypatch, trained):
    """The official-weights path, served from 127.0.0.1 (a 1000-class tiny model stands in for the real file)."""
    import dataclasses
    import hashlib

    from vggnet.models.weights import PRETRAINED

    folder, base_url = file_server
    weights = vggnet.create_model("vgg11", head="compact", width_mult=0.125).state_dict()
    staging = folder / "staging.pth"
    torch.save(weights, staging)
    name = f"vgg11-{hashlib.sha256(staging.read_bytes()).hexdigest()[:8]}.pth"
    staging.rename(folder / name)
    entry = dataclasses.replace(PRETRAINED[("vgg11", "imagenet")], url=f"{base_url}/{name}")
    monkeypatch.setitem(PRETRAINED, ("vgg11", "imagenet"), entry)
    monkeypatch.setattr(
        "vggnet.infer.source.create_model",
        lambda name, **kw: vggnet.create_model(name, head="compact", width_mult=0.125, progress=False, **kw),
    )
    _, data = trained
    [record] = predict("vgg11", [sorted((data / "val" / "ant").glob("*.png"))[0]], pretrained="imagenet")
    assert all(t["class"] in vggnet.imagenet_categories() for t in record["top"])
    assert len(record["top"]) == 5


# ---- embed -------------------------------------------------------------------------------------------------


def test_embed_shapes_normalisation_and_file(trained, mixed_inputs, tmp_path):
    checkpoint, _ = trained
    embeddings = embed(checkpoint, mixed_inputs, batch_size=4, precision="fp32")
    assert embeddings.layer == "flatten"  # the compact head's pre-logits
    assert embeddings.features.shape == (6, 64) and embeddings.features.dtype == np.float32
    assert len(embeddings.errors) == 3
    model = vggnet.load_model(checkpoint).eval()
    x = _transform_of(model)(load_rgb(embeddings.paths[0]))[None]
    with torch.no_grad():
        expected = model.forward_head(model.forward_features(x), pre_logits=True)[0]
    np.testing.assert_allclose(embeddings.features[0], expected.numpy(), rtol=1e-5, atol=1e-6)
    pooled = embed(checkpoint, mixed_inputs[:1], layer="relu3_2", normalize=True)
    assert pooled.features.shape == (1, 32)
    assert np.linalg.norm(pooled.features, axis=1) == pytest.approx(1.0)
    path = embeddings.save(tmp_path / "f.npz")
    stored = np.load(path)
    assert stored["features"].shape == (6, 64) and list(stored["paths"]) == embeddings.paths
    assert str(stored["layer"]) == "flatten"
    with pytest.raises(ValueError, match="unknown layer 'fc7' in this vgg11_bn \\(compact head\\); fc7 is a layer of"):
        embed(checkpoint, mixed_inputs, layer="fc7")


def test_embed_of_an_empty_folder_writes_nothing(trained, tmp_path, capsys):
    checkpoint, _ = trained
    empty = tmp_path / "empty"
    empty.mkdir()
    message = f"no images were found in {empty} ({empty}: a folder with no images); nothing was written"
    with pytest.raises(RuntimeError, match=f"^{re.escape(message)}$"):
        embed(checkpoint, [empty])
    out = tmp_path / "e.npz"
    assert main(["embed", "--model", str(checkpoint), str(empty), "--out", str(out)]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_embed_cli(trained, mixed_inputs, tmp_path, capsys):
    checkpoint, _ = trained
    assert main(["embed", "--model", str(checkpoint), mixed_inputs[0], "--out", str(tmp_path / "e.npz")]) == 0
    assert "1 vectors of 64 values at flatten" in capsys.readouterr().out
    assert main(["embed", "--model", str(checkpoint), *mixed_inputs, "--out", str(tmp_path / "e.npz")]) == 1


# ---- feature maps and Grad-CAM -----------------------------------------------------------------------------


def _reference_grad_cam(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int):
    """Grad-CAM written independently, with forward and backward hooks on a torchvision module."""
    store = {}
    handles = [
        layer.register_forward_hook(lambda m, i, o: store.__setitem__("activation", o.detach().clone())),
        layer.register_full_backward_hook(lambda m, gi, go: store.__setitem__("gradient", go[0].detach())),
    ]
    model.zero_grad()
    model(x.requires_grad_(True))[0, target].backward()
    for handle in handles:
        handle.remove()
    weights = store["gradient"].mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * store["activation"]).sum(dim=1))[0]
    return cam / cam.max()


def test_grad_cam_matches_an_independent_implementation(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.vgg11().eval()
    for module in reference.modules():
        if isinstance(module, torch.nn.ReLU):
            module.inplace = False  # backward hooks need out-of-place ReLUs
    model = vggnet.create_model("vgg11").eval()
    model.load_state_dict(reference.state_dict())
    model.pretrained_cfg = {
        "classes": [str(i) for i in range(1000)],
        "preprocess": Preprocess.imagenet().to_dict(),
    }
    image = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (240, 260, 3), dtype=np.uint8)).save(image)
    result = grad_cam(model, image, target=7, device="cpu")
    assert result.layer == "relu5_2" and result.class_index == 7 and result.cam.shape == (14, 14)
    x = _transform_of(model)(load_rgb(image))[None]
    expected = _reference_grad_cam(reference, reference.features[19], x, 7)  # features.19 is relu5_2
    torch.testing.assert_close(result.cam, expected, atol=1e-4, rtol=1e-3)
    path = save_grad_cam(result, tmp_path / "cam.png")
    width, height = Image.open(path).size
    assert width > 1.5 * height  # the input beside the overlay (tests/test_features.py checks the panels)


def test_explain_cli(trained, tmp_path, capsys):
    checkpoint, data = trained
    image = sorted((data / "val" / "cat").glob("*.png"))[0]
    assert (
        main(["explain", "--model", str(checkpoint), str(image), "--class", "bee", "--out", str(tmp_path / "c.png")])
        == 0
    )
    assert "Grad-CAM of 'bee'" in capsys.readouterr().out
    width, height = Image.open(tmp_path / "c.png").size
    assert width > 1.5 * height and height > 224  # a 32x32 view, enlarged, beside the overlay
    assert (
        main(["explain", "--model", str(checkpoint), str(image), "--class", "cow", "--out", str(tmp_path / "d.png")])
        == 2
    )
    assert "unknown --class 'cow'" in capsys.readouterr().err
    assert main(["features", "--model", str(checkpoint), str(image), "--out", str(tmp_path / "g.png")]) == 0


# ---- export ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("format", ["onnx", "torchscript", "safetensors"])
@pytest.mark.parametrize(("name", "size"), [("vgg11_bn", 224), ("vgg11", 256), ("vgg11_bn", 96)])
def test_export_round_trips(tmp_path, format, name, size):
    if format == "onnx":
        pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = vggnet.create_model(name, num_classes=4, width_mult=0.125)
    model.train()
    with torch.no_grad():  # give BatchNorm non-trivial statistics to fold
        for _ in range(2):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    model.eval()
    model.pretrained_cfg = {
        "classes": list("abcd"),
        "preprocess": {"img_size": size, "resize": size, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    result = export(model, format, out=tmp_path / f"model.{format}", dynamic_batch=format == "onnx")
    assert result.input_size == size and result.path.exists()
    assert result.max_abs_diff <= result.tolerance
    if format == "safetensors":
        restored = vggnet.load_model(result.path)
        assert restored.pretrained_cfg["classes"] == list("abcd")


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_safetensors_export_takes_any_name_and_follows_the_umask(tmp_path, umask):
    """A safetensors export is found by its content, whatever its name, and is as readable as every other output
    (the safetensors library alone would create it readable by its owner only)."""
    model = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125).eval()
    model.pretrained_cfg = {"classes": ["ant", "bee", "cat"], "preprocess": Preprocess(32, 32).to_dict()}
    previous = os.umask(umask)
    try:
        paths = [export(model, "safetensors", out=tmp_path / name).path for name in ("m.st", "m.bin")]
        torchscript = export(model, "torchscript", out=tmp_path / "m.torchscript.pt").path
    finally:
        os.umask(previous)
    for path in paths:
        assert vggnet.load_model(path).pretrained_cfg["classes"] == ["ant", "bee", "cat"]
        assert load_for_inference(str(path), device="cpu").classes == ["ant", "bee", "cat"]  # as --model
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(torchscript.stat().st_mode) == 0o666 & ~umask


def test_export_fails_on_a_mismatch(tmp_path, monkeypatch):
    model = vggnet.create_model("vgg11", num_classes=2, head="compact", width_mult=0.125).eval()
    model.pretrained_cfg = {
        "classes": ["a", "b"],
        "preprocess": {"img_size": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.5] * 3},
    }
    original = export_module.inference_copy

    def broken_copy(network, size):
        copy = original(network, size)
        with torch.no_grad():
            copy.classifier[-1].bias += 1.0
        return copy

    monkeypatch.setattr(export_module, "inference_copy", broken_copy)
    with pytest.raises(RuntimeError, match="differs from PyTorch by 1"):
        export(model, "torchscript", out=tmp_path / "m.pt")


def test_export_cli_writes_beside_the_checkpoint_and_never_overwrites(trained, capsys):
    checkpoint, _ = trained
    assert main(["export", "--model", str(checkpoint), "--format", "torchscript"]) == 0
    written = checkpoint.with_name("best.torchscript.pt")
    assert written.exists() and "checked: max abs difference" in capsys.readouterr().out
    assert main(["export", "--model", str(checkpoint), "--format", "torchscript"]) == 2
    assert "already exists; pass --out" in capsys.readouterr().err
    loaded = torch.jit.load(str(written))
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), vggnet.load_model(checkpoint).eval()(x), atol=1e-4, rtol=1e-4)


def test_export_and_quantize_find_a_taken_output_path_before_loading(tmp_path, monkeypatch):
    from vggnet.infer import quantize as quantize_module

    def too_early(*args, **kwargs):
        pytest.fail("the model was loaded before the output path was checked")

    monkeypatch.setattr(export_module, "load_for_inference", too_early)
    monkeypatch.setattr(quantize_module, "load_for_inference", too_early)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"never read")
    for taken in ("best.onnx", "best.int8.pt"):
        (tmp_path / taken).write_text("the user's")
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path))}/best.onnx already exists; pass --out"):
        export(checkpoint, "onnx")
    with pytest.raises(ValueError, match="best.int8.pt already exists; pass --out"):
        quantize(checkpoint, tmp_path)
    assert (tmp_path / "best.onnx").read_text() == "the user's"
    # A registry model's default path (an alias resolves to its variant), checked before any download.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "export").mkdir(parents=True)
    (tmp_path / "runs" / "export" / "vgg16.torchscript.pt").write_text("the user's")
    with pytest.raises(ValueError, match="^runs/export/vgg16.torchscript.pt already exists"):
        export("vgg", "torchscript", pretrained="imagenet")


# ---- optional extras ---------------------------------------------------------------------------------------


def test_a_missing_extra_names_the_package_and_the_pip_command(monkeypatch):
    from vggnet.extras import MissingExtra, require

    assert require("json", "export", "testing") is json
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an environment without it gives
    with pytest.raises(ImportError, match=r"^ONNX export needs onnxruntime: pip install 'vggnet\[export\]'$") as error:
        require("onnxruntime", "export", "ONNX export")
    assert isinstance(error.value, RuntimeError)  # so the CLI reports it in one line
    too_old = r"needs a newer json \(the installed one has no json.nowhere\): pip install -U 'vggnet\[export\]'"
    with pytest.raises(MissingExtra, match=too_old):
        require("json.nowhere", "export", "testing")


def test_onnx_export_without_the_export_extra(trained, tmp_path, monkeypatch, capsys):
    from vggnet.extras import MissingExtra

    checkpoint, _ = trained
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    out = tmp_path / "m.onnx"
    with pytest.raises(MissingExtra, match=r"^ONNX export needs onnxscript: pip install 'vggnet\[export\]'$"):
        export(checkpoint, "onnx", out=out)
    assert main(["export", "--model", str(checkpoint), "--format", "onnx", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "ONNX export needs onnxscript: pip install 'vggnet[export]'" in err and "Traceback" not in err
    assert not out.exists()


# ---- the fast path -----------------------------------------------------------------------------------------


def test_folding_batchnorm_keeps_outputs_and_layer_names():
    from vggnet.models.inference_form import fold_batchnorm

    torch.manual_seed(0)
    model = vggnet.create_model("vgg13_bn", num_classes=5, width_mult=0.25).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 64, 64) * 3 + 1)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        folded = fold_batchnorm(model)
        torch.testing.assert_close(folded(x), expected, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert folded.layer_names == vggnet.create_model("vgg13_bn", num_classes=5).layer_names


def _with_running_statistics(model: torch.nn.Module) -> torch.nn.Module:
    """`model` in eval mode with BatchNorm statistics that are not the identity, so that folding them shows."""
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    return model.eval()


def test_the_cpu_inference_form_matches_torchvision(monkeypatch):
    import vggnet.models.inference_form as form_module
    import vggnet.models.winograd as winograd_module
    from vggnet.models.inference_form import ConvReLU, LinearReLU, inference_form

    winograd = []
    original = form_module.winograd_conv
    monkeypatch.setattr(
        form_module, "winograd_conv", lambda x, *a, **k: winograd.append(x.shape) or original(x, *a, **k)
    )
    monkeypatch.setattr(winograd_module, "WINOGRAD_MAX_MAP_PIXELS", 16 * 16 - 1)  # the 16x16 maps just above
    reference = _with_running_statistics(torchvision.models.vgg11_bn(num_classes=5))
    model = vggnet.create_model("vgg11_bn", num_classes=5)
    model.load_state_dict(reference.state_dict())
    form = inference_form(model, torch.float32, torch.device("cpu"))
    assert sum(isinstance(m, ConvReLU) for m in form.features) == 8
    assert [type(m) for m in form.classifier][::3] == [LinearReLU, LinearReLU, LinearReLU]
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.BatchNorm2d)) for m in form.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the model itself is left alone
    with torch.no_grad():
        for batch in (3, 1, 3):  # a new input shape packs the convolutions' weights again
            x = torch.randn(batch, 3, 64, 64)
            fused = form(x.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(fused, reference(x), atol=1e-4, rtol=1e-4)
    # Winograd: the fp32 layers with 256 or more input channels, on maps smaller than 16x16, at every batch size
    small = [(256, 8, 8), (512, 8, 8), (512, 4, 4), (512, 4, 4)]
    assert winograd == [(batch, *layer) for batch in (3, 1, 3) for layer in small]


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no oneDNN bf16 kernels on this CPU")
def test_the_bf16_inference_form_runs_winograd_where_it_pays(monkeypatch):
    import vggnet.models.inference_form as form_module
    import vggnet.models.winograd as winograd_module

    winograd = []
    original = form_module.winograd_conv
    monkeypatch.setattr(
        form_module, "winograd_conv", lambda x, *a, **k: winograd.append(tuple(x.shape)) or original(x, *a, **k)
    )
    reference = _with_running_statistics(torchvision.models.vgg11_bn(num_classes=5))
    model = vggnet.create_model("vgg11_bn", num_classes=5)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = reference(x)
        outputs = {}
        for pays in (False, True):  # oneDNN's bf16 convolutions, then Winograd's where it pays
            monkeypatch.setattr(winograd_module, "bf16_winograd_pays", lambda pays=pays: pays)
            form = form_module.inference_form(model, torch.bfloat16, torch.device("cpu"))
            outputs[pays] = form(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()
    # 256 or more input channels, on maps up to 56x56, only where bf16 Winograd pays
    assert winograd == [(2, 256, 16, 16), (2, 256, 8, 8), (2, 512, 8, 8), (2, 512, 4, 4), (2, 512, 4, 4)]
    for out in outputs.values():  # bf16's rounding (measured: 3e-3 of the largest logit, 4e-3 with Winograd)
        assert (out - expected).abs().max() < 2e-2 * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_compiled_form_calls_winograd_as_one_operator(dtype, monkeypatch):
    """For torch.compile (no fused ReLUs), the convolutions Winograd may take are `WinogradConv`s: the graph calls
    the `vggnet::winograd_conv` operator without a break, and inductor's program gives the eager form's outputs."""
    import torch._inductor.config as inductor_config

    import vggnet.models.winograd as winograd_module
    from vggnet.models.inference_form import WinogradConv, inference_form, onednn_runs

    monkeypatch.setattr(winograd_module, "bf16_winograd_pays", lambda: True)
    torch.manual_seed(0)
    model = vggnet.create_model("vgg11", num_classes=5, head="compact", width_mult=0.5).eval()
    form = inference_form(model, dtype, torch.device("cpu"), fuse=False)
    taken = [i for i, m in enumerate(form.features) if isinstance(m, WinogradConv)]
    if not onednn_runs(torch.device("cpu"), dtype):  # bf16 on plain AVX2: the plain form, as the eager one
        assert taken == []
        return
    # width 0.5: the three convolutions with 256 input channels (at 8x8, 4x4 and 4x4 for a 64x64 input)
    assert taken == [13, 16, 18]
    assert form.state_dict().keys() == inference_form(model, dtype, torch.device("cpu")).state_dict().keys()
    x = torch.randn(2, 3, 64, 64).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        explained = torch._dynamo.explain(form)(x)
        assert explained.graph_break_count == 0
        assert "vggnet.winograd_conv" in explained.graphs[0].code
        expected = inference_form(model, dtype, torch.device("cpu"))(x).float()
        with inductor_config.patch(freezing=True):
            compiled = torch.compile(form, dynamic=False)(x).float()
    tolerance = 1e-4 if dtype == torch.float32 else 2e-2  # bf16: oneDNN's and inductor's roundings differ
    assert (compiled - expected).abs().max() <= tolerance * expected.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(2, 8, 6, 10), (1, 3, 16, 16), (2, 8, 7, 6), (2, 8, 6, 7)])
def test_the_2x2_max_pool_by_maxima_is_pytorchs(dtype, shape):
    """`MaxPool2x2` gives PyTorch's pooling bit for bit, NaN and infinities included; odd sides and other layouts
    go to PyTorch's kernel."""
    from vggnet.models.inference_form import MaxPool2x2

    torch.manual_seed(0)
    x = torch.randn(shape).to(dtype)
    x[0, 0, 0, 0], x[0, 0, 1, 2], x[-1, -1, -1, -1] = float("nan"), float("inf"), float("-inf")
    for layout in (torch.channels_last, torch.contiguous_format):
        x = x.contiguous(memory_format=layout)
        pooled = MaxPool2x2()(x)
        torch.testing.assert_close(pooled, torch.nn.functional.max_pool2d(x, 2), rtol=0, atol=0, equal_nan=True)
        assert pooled.is_contiguous(memory_format=layout)


def test_the_form_is_a_copy_that_training_the_model_leaves_alone():
    """The fp32 form's tensors are its own, even where the conversion changed nothing (an eval-mode,
    channels_last model without BatchNorm): training the model on does not change the form's outputs."""
    from vggnet.models.inference_form import MaxPool2x2, inference_form

    torch.manual_seed(0)
    model = vggnet.create_model("vgg11", num_classes=5, head="compact", width_mult=0.25).eval()
    model = model.to(memory_format=torch.channels_last)
    form = inference_form(model, torch.float32, torch.device("cpu"))
    assert sum(isinstance(m, MaxPool2x2) for m in form.features) == 5  # the fp32 CPU form pools by maxima
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(form(x), expected, atol=1e-4, rtol=1e-4)
        for parameter in model.parameters():
            parameter.add_(1.0)
        torch.testing.assert_close(form(x), expected, atol=1e-4, rtol=1e-4)


def test_the_low_precision_form_fuses_only_where_onednn_runs_it():
    from vggnet.models.inference_form import ConvReLU, inference_form

    model = _with_running_statistics(vggnet.create_model("vgg11_bn", num_classes=5, head="compact", width_mult=0.25))
    form = inference_form(model, torch.bfloat16, torch.device("cpu"))
    fused = any(isinstance(m, ConvReLU) for m in form.modules())
    assert fused == torch.ops.mkldnn._is_mkldnn_bf16_supported()  # plain AVX2 has no bf16 kernels to fuse into
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        low = form(x.to(torch.bfloat16).contiguous(memory_format=torch.channels_last)).float()
        torch.testing.assert_close(low, model(x), atol=0.05, rtol=0.05)


def test_the_default_fast_path_agrees_with_fp32(trained):
    from vggnet.infer.runner import InferenceRunner
    from vggnet.infer.source import load_for_inference

    checkpoint, data = trained
    images = sorted(str(p) for p in (data / "val").rglob("*.png"))
    exact = predict(checkpoint, images, precision="fp32")
    fast = predict(checkpoint, images, precision="bf16")
    assert [r["top"][0]["index"] for r in fast] == [r["top"][0]["index"] for r in exact]
    for a, b in zip(fast, exact, strict=True):
        assert a["top"][0]["prob"] == pytest.approx(b["top"][0]["prob"], abs=0.03)
    runner = InferenceRunner(load_for_inference(checkpoint, device="cpu", precision="bf16"))
    assert next(runner.model.parameters()).dtype == torch.bfloat16
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in runner.model.modules())


def test_compiled_path_agrees(trained):
    checkpoint, data = trained
    images = sorted(str(p) for p in (data / "val" / "ant").glob("*.png"))
    exact = predict(checkpoint, images, precision="fp32")
    compiled = predict(checkpoint, images, precision="fp32", compile=True)
    for a, b in zip(compiled, exact, strict=True):
        assert a["top"][0]["index"] == b["top"][0]["index"]
        assert a["top"][0]["prob"] == pytest.approx(b["top"][0]["prob"], abs=1e-4)


# ---- int8 --------------------------------------------------------------------------------------------------


def test_files_are_recognised_by_content_not_by_name(trained, tmp_path, monkeypatch):
    pytest.importorskip("torchao")
    from vggnet.extras import MissingExtra

    checkpoint, data = trained
    written = quantize(checkpoint, data / "train", out=tmp_path / "model.int8.pt", calib_images=4).path
    renamed = written.rename(tmp_path / "weights.bin")  # away from .int8.pt
    loaded = load_for_inference(renamed)
    assert loaded.precision == "int8" and not isinstance(loaded.model, vggnet.VGG)
    assert loaded.classes == ["ant", "bee", "cat"]
    with pytest.raises(ValueError, match="weights.bin is an int8 model written by `vggnet quantize`, not a VGG"):
        vggnet.load_model(renamed)
    fp32_named_int8 = shutil.copy(checkpoint, tmp_path / "best.int8.pt")  # and the other way round
    loaded = load_for_inference(fp32_named_int8, device="cpu", precision="fp32")
    assert loaded.precision == "fp32" and isinstance(loaded.model, vggnet.VGG)
    # Without torchao, quantizing and running an int8 model say which extra to install.
    for name in ("torchao", "torchao.quantization.pt2e.quantize_pt2e"):
        monkeypatch.setitem(sys.modules, name, None)
    needs = r"^int8 quantization needs torchao: pip install 'vggnet\[quantize\]'$"
    with pytest.raises(MissingExtra, match=needs):
        load_for_inference(renamed)
    with pytest.raises(MissingExtra, match=needs):
        quantize(checkpoint, data / "train", out=tmp_path / "again.int8.pt")


def test_quantize_checks_val_before_calibrating_and_writes_nothing_on_failure(trained, tmp_path, monkeypatch, capsys):
    pytest.importorskip("torchao")
    from vggnet.infer import quantize as quantize_module

    checkpoint, data = trained
    out = tmp_path / "q" / "x.int8.pt"
    command = ["quantize", "--model", str(checkpoint), "--calib", str(data / "train"), "--out", str(out)]
    calibrate = quantize_module.prepare_for_calibration

    def too_early(*args, **kwargs):
        pytest.fail("calibration started before --val was checked")

    monkeypatch.setattr(quantize_module, "prepare_for_calibration", too_early)
    missing = tmp_path / "nothere"
    assert main([*command, "--val", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"vggnet quantize: error: --val {missing} does not exist; pass a labelled folder of class sub-folders (or a "
        f"table), as `vggnet eval --data` takes\n"
    )
    other = write_image_folder(tmp_path / "other", classes=("ant", "bee", "dog"), split=False)
    assert main([*command, "--val", str(other)]) == 2
    assert "differ from the model's classes (missing: ['cat']; not the model's: ['dog'])" in capsys.readouterr().err
    assert not out.parent.exists()
    # A failure after calibration, while comparing top-1 on --val, leaves nothing either.
    monkeypatch.setattr(quantize_module, "prepare_for_calibration", calibrate)

    def failing(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(quantize_module, "evaluate", failing)
    assert main([*command, "--val", str(data)]) == 1
    assert "evaluation failed" in capsys.readouterr().err
    assert not out.parent.exists()


def test_quantized_model_runs_through_predict_and_eval(trained, tmp_path, capsys):
    pytest.importorskip("torchao")
    checkpoint, data = trained
    out = tmp_path / "model.int8.pt"
    code = main(["quantize", "--model", str(checkpoint), "--calib", str(data / "train"), "--val", str(data),
                 "--out", str(out)])  # fmt: skip
    assert code == 0
    report = capsys.readouterr().out
    assert "calibrated on 24 images" in report and "top-1 on 12 images: fp32" in report
    stored = torch.load(out, weights_only=True)  # tensors and plain values only: no code runs on load
    assert stored["format"] == "vggnet-int8" and stored["observers"]
    images = sorted(str(p) for p in (data / "val").rglob("*.png"))
    exact = predict(checkpoint, images, precision="fp32")
    quantized = predict(out, images)
    agreement = np.mean([a["top"][0]["index"] == b["top"][0]["index"] for a, b in zip(quantized, exact, strict=True)])
    assert agreement >= 0.9
    assert quantized[0]["top"][0]["class"] in ("ant", "bee", "cat")
    result = evaluate(out, data)
    assert result["num_images"] == 12 and 0 <= result["top1"] <= 1
    assert f"int8 {result['top1']:.4f}" in report  # the int8 model compared before saving is the one saved
    with pytest.raises(ValueError, match="embed needs the fp32 model"):
        embed(out, images[:1])
    with pytest.raises(ValueError, match="is an int8 model; drop --precision fp32"):
        predict(out, images[:1], precision="fp32")
