"""Training on tiny generated folders: the run folder, checkpoints, resuming, config merging, bad data."""

import csv
import functools
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_train
from serving import wait_for

import vggnet
from vggnet import atomic as checkpoint_module
from vggnet.cli import main
from vggnet.data import ImageListDataset, Preprocess, load_rgb
from vggnet.training import TrainConfig, TrainingInterrupted, loop, train
from vggnet.training.setup import scan_index


def read_rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_a_run_learns_and_leaves_a_complete_run_folder(image_folder, tmp_path, capsys):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=4, precision="auto")
    run = result.run_dir
    assert run == tmp_path / "runs" / "exp"
    assert {p.name for p in run.iterdir()} == {
        "config.yaml", "metrics.csv", "best.pt", "last.pt", "results.png", "confusion_matrix.png"
    }  # fmt: skip
    rows = read_rows(run)
    assert list(rows[0]) == [
        "epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr", "seconds", "images_per_s"
    ]  # fmt: skip
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert result.best["val_top1"] == pytest.approx(max(float(r["val_top1"]) for r in rows), abs=1e-6)
    assert result.best["val_top1"] >= 0.9  # three colours: easy
    assert all(0 <= float(r["val_top1"]) <= float(r["val_top5"]) <= 1 for r in rows)
    out = capsys.readouterr().out
    assert "ant  " in out and "total " in out  # the class table
    assert "precision bf16" in out or "precision fp32" in out
    assert f"best val top-1 {result.best['val_top1']:.4f}" in out
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert TrainConfig(**saved).epochs == 4 and saved["lr"] == 0.05 and saved["weight_decay"] == 5e-4
    # `vggnet train --config config.yaml` repeats the run.
    assert loop.make_config(loop.load_config_file(run / "config.yaml")) == TrainConfig(**saved)


def test_progress_bar_on_a_terminal(image_folder, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "_is_interactive", lambda: True)
    monkeypatch.setattr(loop, "tqdm", functools.partial(loop.tqdm, mininterval=0, miniters=1))  # draw every step
    tiny_train(image_folder, tmp_path / "runs", epochs=1)
    bar = capsys.readouterr().err
    assert "epoch 1/1" in bar and "3/3" in bar
    for field in ("loss=", "top1=", "lr=", "img_s="):
        assert field in bar


def test_checkpoints_are_self_describing(image_folder, tmp_path):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=2)
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert best["format"] == "vggnet-checkpoint" and best["classes"] == ["ant", "bee", "cat"]
    assert best["model"] == {"name": "vgg11_bn", "kwargs": {**best["model"]["kwargs"], "num_classes": 3}}
    assert best["preprocess"]["img_size"] == 32 and best["runtime"]["precision"] == "fp32"
    assert "optimizer" not in best
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert {"optimizer", "scheduler", "scaler", "rng", "progress"} <= last.keys()
    assert all(group["fused"] for group in last["optimizer"]["param_groups"])  # fused optimizer kernels
    # Rebuilt from the path alone, the best model scores on the validation folder what the run recorded.
    model = vggnet.load_model(result.run_dir / "best.pt")
    assert model.pretrained_cfg["classes"] == ["ant", "bee", "cat"]
    recomputed = vggnet.evaluate(model, image_folder, batch_size=5, device="cpu", precision="fp32")
    assert recomputed["top1"] == pytest.approx(best["metrics"]["val_top1"])
    assert recomputed["loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-4)


def test_other_optimizer_schedule_and_augmentation(image_folder, tmp_path):
    result = tiny_train(
        image_folder, tmp_path / "runs", epochs=2, opt="adamw", lr=None, sched="none", warmup_epochs=0,
        label_smoothing=0.1, augment="trivial", crop_pct=0.875,
    )  # fmt: skip
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert (saved["opt"], saved["lr"], saved["weight_decay"]) == ("adamw", 1e-3, 0.05)  # adamw's defaults
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    assert last["preprocess"]["resize"] == round(32 / 0.875)
    assert [g["lr"] for g in last["optimizer"]["param_groups"]] == [1e-3, 1e-3]  # constant: no schedule
    assert last["optimizer"]["param_groups"][1]["weight_decay"] == 0.0  # none on biases and norms


def test_the_training_loss_is_label_smoothed_cross_entropy(image_folder, tmp_path):
    """One step from known weights: the epoch's recorded loss is that step's loss, which must be the label-smoothed
    cross-entropy of those weights on the training images, computed here from its definition."""
    smoothing, classes = 0.1, ["ant", "bee", "cat"]
    torch.manual_seed(0)
    # No BatchNorm and no dropout, so that training mode computes what eval mode does.
    start = vggnet.create_model("vgg11", num_classes=3, head="compact", width_mult=0.125, dropout=0.0)
    with torch.no_grad():
        # Confident predictions (logits in the tens), where smoothing changes the loss most.
        torch.nn.init.normal_(start.classifier[-1].weight, std=3.0)
    torch.save(start.state_dict(), tmp_path / "start.pt")
    # All 24 training images in one batch: one step, taken from the known weights.
    result = tiny_train(
        image_folder, tmp_path / "runs", model="vgg11", dropout=0.0, augment="none", epochs=1, batch_size=24,
        pretrained=str(tmp_path / "start.pt"), label_smoothing=smoothing,
    )  # fmt: skip

    paths = sorted((image_folder / "train").rglob("*.png"))
    preprocess = torch.load(result.run_dir / "last.pt", weights_only=True)["preprocess"]
    images = torch.stack([Preprocess.from_checkpoint(preprocess).transform()(load_rgb(path)) for path in paths])
    labels = torch.tensor([classes.index(path.parent.name) for path in paths])
    with torch.no_grad():
        log_probs = start.eval()(images).log_softmax(dim=1)
    # The smoothed target: 1 - s on the true class, and s spread evenly over all K classes.
    target = torch.full_like(log_probs, smoothing / len(classes))
    target[torch.arange(len(labels)), labels] += 1 - smoothing
    smoothed = -(target * log_probs).sum(dim=1).mean().item()
    plain = -log_probs[torch.arange(len(labels)), labels].mean().item()
    assert result.metrics["train_loss"] == pytest.approx(smoothed, rel=1e-4)
    assert abs(smoothed - plain) > 100 * 1e-4 * plain  # the test tells the two apart


def test_runs_are_numbered_never_overwritten(image_folder, tmp_path):
    first = tiny_train(image_folder, tmp_path / "runs", epochs=1, name="trial")
    second = tiny_train(image_folder, tmp_path / "runs", epochs=1, name="trial")
    assert (first.run_dir.name, second.run_dir.name) == ("trial", "trial2")
    assert (first.run_dir / "best.pt").exists()


class Crash(Exception):
    pass


def _crash_after_epoch(monkeypatch, epoch):
    original = loop._Run._end_epoch

    def end_epoch_then_crash(self):
        row = original(self)
        if self.epoch == epoch:
            raise Crash
        return row

    monkeypatch.setattr(loop._Run, "_end_epoch", end_epoch_then_crash)


def _assert_same_run(a, b):
    state_a = torch.load(a / "last.pt", weights_only=True)
    state_b = torch.load(b / "last.pt", weights_only=True)
    for key, value in state_a["state_dict"].items():
        assert torch.equal(value, state_b["state_dict"][key]), key
    timing = {"seconds", "images_per_s"}
    rows_a, rows_b = read_rows(a), read_rows(b)
    assert [{k: v for k, v in r.items() if k not in timing} for r in rows_a] == [
        {k: v for k, v in r.items() if k not in timing} for r in rows_b
    ]


def test_resume_after_an_epoch_equals_an_uninterrupted_run(image_folder, tmp_path, monkeypatch):
    settings = {"augment": "basic", "dropout": 0.5, "deterministic": True, "seed": 3}
    full = tiny_train(image_folder, tmp_path / "runs", name="full", **settings)
    with monkeypatch.context() as patch:
        _crash_after_epoch(patch, 1)
        with pytest.raises(Crash):
            tiny_train(image_folder, tmp_path / "runs", name="cut", **settings)
    cut = tmp_path / "runs" / "cut"
    assert len(read_rows(cut)) == 1
    resumed = train(resume=cut / "last.pt")
    assert resumed.run_dir == cut
    _assert_same_run(full.run_dir, cut)
    assert [int(r["epoch"]) for r in read_rows(cut)] == [1, 2, 3]


def test_the_augmentation_is_the_same_whatever_the_loader_processes(image_folder, tmp_path, monkeypatch):
    """Each sample's random augmentation is seeded by (seed, epoch, index): a run with two loader processes
    equals one that decodes in the training process, and its processes start once for the whole run (one set for
    training, one for validation), not at every epoch."""
    from torch.utils.data import dataloader

    started, iterators = [], []
    original = dataloader._MultiProcessingDataLoaderIter.__init__

    def counting(self, loader):
        started.append(loader.num_workers)
        iterators.append(self)
        original(self, loader)

    monkeypatch.setattr(dataloader._MultiProcessingDataLoaderIter, "__init__", counting)
    settings = {"augment": "trivial", "dropout": 0.5, "deterministic": True, "seed": 5}
    in_process = tiny_train(image_folder, tmp_path / "runs", name="in_process", workers=0, **settings)
    assert started == []
    with_workers = tiny_train(image_folder, tmp_path / "runs", name="two_workers", workers=2, **settings)
    assert started == [2, 2]  # three epochs
    workers = [worker for iterator in iterators for worker in iterator._workers]
    # The run ended them (joined, or terminated after torch's join timeout: then dead a moment later)
    wait_for(lambda: not any(worker.is_alive() for worker in workers), "the loader processes to end")
    _assert_same_run(in_process.run_dir, with_workers.run_dir)


def test_a_run_from_decoded_images_kept_in_memory_equals_one_that_reads_them(image_folder, tmp_path, monkeypatch):
    """--cache ram decodes each image once, before the first epoch; loader processes forked after it read the kept
    pixels, and the run is the one that reads and decodes the files at every epoch."""
    from vggnet.data import dataset

    settings = {"augment": "trivial", "dropout": 0.5, "deterministic": True, "seed": 5}
    read = tiny_train(image_folder, tmp_path / "runs", name="read", workers=0, **settings)
    decoded, load_rgb = [], dataset.load_rgb
    monkeypatch.setattr(dataset, "load_rgb", lambda path, size: decoded.append(path) or load_rgb(path, size))
    kept = tiny_train(image_folder, tmp_path / "runs", name="kept", workers=2, cache="ram", **settings)
    _assert_same_run(read.run_dir, kept.run_dir)
    images = sorted(path for split in ("train", "val") for path in (image_folder / split).rglob("*.png"))
    # The size estimate's sample (every image of so small a set), then each image once; none after, in any process
    # (the loader processes are forked copies of this one: their decoding would not be counted here, so the next
    # run decodes in this process).
    assert sorted(map(Path, decoded)) == sorted(images * 2)
    decoded.clear()
    tiny_train(image_folder, tmp_path / "runs", name="in_process", workers=0, cache="ram", **settings)
    assert len(decoded) == 2 * len(images)


def test_images_that_would_not_fit_in_memory_are_read_at_every_epoch(image_folder, tmp_path, monkeypatch, caplog):
    """The memory check counts a copy of the pixels for each process that holds one: off Linux, each loader
    process gets its own."""
    from vggnet.data.dataset import ImageListDataset
    from vggnet.training import setup

    kept = []
    monkeypatch.setattr(ImageListDataset, "keep_decoded", lambda self, threads: kept.append(len(self)) or 0)
    pixels = 36 * 20 * 20 * 3  # the folder's 36 images, 20x20
    monkeypatch.setattr(setup, "available_memory_bytes", lambda: 2 * pixels + 1)  # half holds one copy
    tiny_train(image_folder, tmp_path / "runs", name="fits", cache="ram", workers=2)
    assert kept == [24, 12]
    monkeypatch.setattr(setup, "LOADERS_FORK", False)
    with caplog.at_level("WARNING", logger="vggnet"):
        result = tiny_train(image_folder, tmp_path / "runs", name="three_copies", cache="ram", workers=2)
    assert kept == [24, 12] and result.best["val_top1"] >= 0  # nothing kept, and the run went on
    [warning] = [record.getMessage() for record in caplog.records if "--cache ram" in record.getMessage()]
    assert "(3 copies: one for each process), more than half of the 0.0 GB of memory available; reading" in warning


def test_the_processes_on_a_machine_share_its_cores_to_fill_the_cache(monkeypatch):
    """Under torchrun every process keeps its own copy: each decodes with its share of the machine's cores."""
    from vggnet.data.dataset import ImageListDataset
    from vggnet.training import setup
    from vggnet.training.distributed import Distributed

    threads = []
    monkeypatch.setattr(ImageListDataset, "keep_decoded", lambda self, count: threads.append(count) or 0)
    monkeypatch.setattr(setup, "usable_cores", lambda: 8)
    dataset = ImageListDataset([], transform=None, decode_size=None)
    for local_world_size in (1, 3, 8, 16):
        setup.cache_in_memory([dataset], Distributed(0, 16, 0, local_world_size), workers=2)
    assert threads == [8, 2, 1, 1]


def test_with_decode_device_the_cache_keeps_the_validation_images(image_folder, tmp_path, monkeypatch):
    """--decode device's loader reads the training images' bytes, which the device decodes: only validation's
    images are decoded by the loader processes, and so kept decoded."""
    from vggnet.data.dataset import ImageListDataset

    kept = []
    monkeypatch.setattr(ImageListDataset, "keep_decoded", lambda self, threads: kept.append(len(self)) or 0)
    tiny_train(image_folder, tmp_path / "runs", cache="ram", decode="device", device="cpu")
    assert kept == [12]  # the folder's 12 validation images; none of its 24 training images


def test_each_image_gets_the_same_augmentation_in_any_number_of_processes(image_folder):
    """Under torchrun each process takes a share of the epoch's images; an image's random crop and flip are the
    ones a single process gives it (and another epoch's differ)."""
    from vggnet.data import discover_splits
    from vggnet.training.config import make_config
    from vggnet.training.distributed import Distributed
    from vggnet.training.setup import TrainingData

    config = make_config({"data": str(image_folder), "img_size": 32, "augment": "basic", "batch_size": 4, "workers": 0})
    splits, preprocess = discover_splits(image_folder), Preprocess.imagenet(32)

    def images_by_index(rank: int, world_size: int, epoch: int) -> dict[int, torch.Tensor]:
        distributed = Distributed(rank=rank, world_size=world_size)
        data = TrainingData(splits, preprocess, config, distributed, torch.device("cpu"))
        images = torch.cat([batch for batch, _, _ in data.train_loader(epoch)])
        return dict(zip(list(data.sampler), images, strict=True))

    alone = images_by_index(0, 1, epoch=1)
    shares = [images_by_index(rank, 2, epoch=1) for rank in (0, 1)]
    assert set(shares[0]) | set(shares[1]) == set(alone)
    for share in shares:
        for index, image in share.items():
            assert torch.equal(image, alone[index]), index
    next_epoch = images_by_index(0, 1, epoch=2)
    assert any(not torch.equal(next_epoch[index], image) for index, image in alone.items())


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(image_folder, tmp_path, monkeypatch, capsys):
    settings = {"augment": "none", "dropout": 0.0, "deterministic": True}
    full = tiny_train(image_folder, tmp_path / "runs", name="full", **settings)
    fetched = {"count": 0}
    original = ImageListDataset.__getitem__

    def getitem_then_ctrl_c(self, index):
        fetched["count"] += 1
        if fetched["count"] == 24 + 12 + 8 + 3:  # epoch 1 (24 train, 12 val), then in epoch 2's second batch
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, index)

    with monkeypatch.context() as patch:
        patch.setattr(ImageListDataset, "__getitem__", getitem_then_ctrl_c)
        with pytest.raises(TrainingInterrupted) as interrupted:
            tiny_train(image_folder, tmp_path / "runs", name="cut", **settings)
    cut = tmp_path / "runs" / "cut"
    assert interrupted.value.resume_command == f"vggnet train --resume {cut / 'last.pt'}"
    assert "Resume with: vggnet train --resume" in capsys.readouterr().err
    progress = torch.load(cut / "last.pt", weights_only=True)["progress"]
    assert progress["epoch"] == 1 and progress["partial"]["step"] == 1
    train(resume=cut / "last.pt")
    _assert_same_run(full.run_dir, cut)


def test_a_run_resumes_from_any_folder_and_with_its_data_moved(image_folder, tmp_path, monkeypatch):
    """A run started with relative paths saves its data's absolute path, and does not read its pretrained weights
    again when resumed: it resumes from another folder; moved data is named with --data."""
    import vggnet

    monkeypatch.chdir(tmp_path)  # image_folder is tmp_path / "data"
    weights = vggnet.create_model("vgg11_bn", head="compact", width_mult=0.125, num_classes=5)
    torch.save(weights.state_dict(), "start.pt")
    settings = {"augment": "basic", "dropout": 0.5, "deterministic": True, "seed": 3, "pretrained": "start.pt"}
    tiny_train("data", "runs", name="full", **settings)
    with monkeypatch.context() as patch:
        _crash_after_epoch(patch, 1)
        with pytest.raises(Crash):
            tiny_train("data", "runs", name="cut", **settings)
    cut = tmp_path / "runs" / "cut"
    saved = yaml.safe_load((cut / "config.yaml").read_text())
    assert saved["data"] == str(image_folder) and saved["pretrained"] == "start.pt"
    assert torch.load(cut / "last.pt", weights_only=True)["config"]["data"] == str(image_folder)

    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # where neither "data" nor "start.pt" is
    with monkeypatch.context() as patch:
        _crash_after_epoch(patch, 2)
        with pytest.raises(Crash):
            train(resume=cut / "last.pt")
    image_folder.rename(tmp_path / "moved")
    with pytest.raises(ValueError, match="does not exist"):
        train(resume=cut / "last.pt")
    train(resume=cut / "last.pt", data=str(tmp_path / "moved"))
    _assert_same_run(tmp_path / "runs" / "full", cut)
    assert yaml.safe_load((cut / "config.yaml").read_text())["data"] == str(image_folder)  # as the run began
    assert torch.load(cut / "last.pt", weights_only=True)["config"]["data"] == str(tmp_path / "moved")


def test_resume_repairs_metrics_written_after_the_last_checkpoint(image_folder, tmp_path):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=2)
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    # A crash after metrics.csv was written but before last.pt was: the file is one row ahead.
    last["progress"]["history"] = last["progress"]["history"][:1]
    last["progress"]["epoch"] = 1
    torch.save(last, result.run_dir / "last.pt")
    train(resume=result.run_dir / "last.pt")
    assert [int(r["epoch"]) for r in read_rows(result.run_dir)] == [1, 2]


def test_resume_refuses_new_settings_best_pt_and_a_finished_run(image_folder, tmp_path):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=1)
    with pytest.raises(ValueError, match="drop --lr"):
        train(resume=result.run_dir / "last.pt", lr=0.1)
    with pytest.raises(ValueError, match="best.pt holds only the model; resume from last.pt"):
        train(resume=result.run_dir / "best.pt")
    with pytest.raises(ValueError, match="has finished 1 of its 1 epochs; .* pass --epochs with more than 1$"):
        train(resume=result.run_dir / "last.pt")


def test_the_run_is_described_in_words_and_a_warm_up_as_long_as_the_run_is_warned_about(
    image_folder, tmp_path, capsys, caplog
):
    with caplog.at_level("WARNING", logger="vggnet"):
        tiny_train(image_folder, tmp_path / "runs", epochs=1, freeze_features=True, warmup_epochs=1)
    printed = capsys.readouterr().out
    # the compact head's 64 x 3 weights and 3 biases, which in millions would be 0.00M
    assert "0.15M parameters, 195 trainable" in printed and "1 epoch of 3 steps" in printed
    assert "0 loader workers" in printed and "(cosine, 1 warm-up epoch)" in printed
    assert "top-5" not in printed  # with three classes, always all of them
    [warning] = [record.getMessage() for record in caplog.records if "--warmup-epochs" in record.getMessage()]
    assert "--warmup-epochs 1 is the whole run (--epochs 1)" in warning and "only at the last step" in warning
    caplog.clear()
    with caplog.at_level("WARNING", logger="vggnet"):
        tiny_train(image_folder, tmp_path / "runs", epochs=2, warmup_epochs=1)
    assert "--warmup-epochs" not in caplog.text


def test_resume_validates_the_checkpoint_and_names_the_bad_entry(image_folder, tmp_path):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=1)
    last = torch.load(result.run_dir / "last.pt", weights_only=True)
    for mutate, message in [
        (lambda c: c.update(optimizer=[1, 2]), "entry 'optimizer' must be a dict, got list"),
        (
            lambda c: c["state_dict"].update({"features.0.weight": "weights"}),
            "entry 'features.0.weight' is not a tensor",
        ),
        (lambda c: c["progress"].update(epoch="one"), "entry 'progress.epoch' must be a int"),
        (lambda c: c.update(rng_by_rank=[c["rng"], {"torch": "state"}]), "entry 'rng_by_rank' must be a list"),
    ]:
        broken = {**last, "state_dict": dict(last["state_dict"]), "progress": dict(last["progress"])}
        mutate(broken)
        path = tmp_path / "broken.pt"
        torch.save(broken, path)
        with pytest.raises(ValueError, match=message):
            train(resume=path)


def test_a_failed_write_leaves_the_previous_checkpoint(image_folder, tmp_path, monkeypatch):
    result = tiny_train(image_folder, tmp_path / "runs", epochs=1)
    before = (result.run_dir / "last.pt").read_bytes()

    def full_disk(content, f):
        f.write(b"partial bytes")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        checkpoint_module.atomic_save({"x": torch.zeros(1)}, result.run_dir / "last.pt")
    assert (result.run_dir / "last.pt").read_bytes() == before
    assert not [p for p in result.run_dir.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert torch.load(result.run_dir / "last.pt", weights_only=True)["epoch"] == 1


def test_config_file_and_flags(image_folder, tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text(f"data: {image_folder}\nepochs: 5\nlr: 1e-2\nbatch-size: 4\nmodel: vgg11\n")
    merged = loop.make_config({**loop.load_config_file(config), "epochs": 1})
    assert (merged.epochs, merged.lr, merged.batch_size, merged.model) == (1, 0.01, 4, "vgg11")
    config.write_text("epochs: 5\nlearning_rate: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['learning_rate'\]"):
        loop.make_config(loop.load_config_file(config))
    config.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must hold a mapping"):
        loop.load_config_file(config)


def test_digits_defaults_apply_only_without_data():
    assert loop.make_config({}).model == "vgg11_bn"
    assert loop.make_config({"epochs": 2}).img_size == 32
    assert loop.make_config({"data": "x"}).model == "vgg16_bn"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"epochs": 0}, "--epochs must be at least 1, got 0"),
        ({"opt": "adam"}, "unknown --opt 'adam'; choose one of: sgd, adamw"),
        ({"img_size": 16}, "--img-size must be at least 32"),
        ({"lr": -1.0}, "--lr must be positive"),
        ({"batch_size": "8"}, "--batch-size must be int, got '8'"),
        ({"warmup_epochs": -1}, "--warmup-epochs must be at least 0"),
        ({"label_smoothing": 1.0}, "--label-smoothing must be in"),
        ({"name": "../x"}, "--name '../x' must be a plain folder name"),
    ],
)
def test_bad_settings_name_the_flag(image_folder, tmp_path, settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_train(image_folder, tmp_path / "runs", **settings)
    assert not (tmp_path / "runs").exists()


def test_unreadable_images_are_skipped_or_refused(image_folder, tmp_path, caplog, capsys):
    (image_folder / "train" / "ant" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (image_folder / "val" / "bee" / "empty.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"2 unreadable image\(s\) \(--strict\)"):
        tiny_train(image_folder, tmp_path / "runs", strict=True)
    assert not (tmp_path / "runs").exists()
    capsys.readouterr()
    result = tiny_train(image_folder, tmp_path / "runs", epochs=1)
    assert "skipping 2 unreadable image(s)" in caplog.text and "broken.png" in caplog.text
    printed = capsys.readouterr().out  # the counts as found, then as trained on
    assert "3 classes, 25 train, 13 val" in printed and "without them: 24 train, 12 val" in printed
    verdicts = json.loads(scan_index(image_folder).read_text())["files"]  # what the next run trusts
    assert len(verdicts) == len(list(image_folder.rglob("*.*")))
    bad = [image_folder / "train" / "ant" / "broken.png", image_folder / "val" / "bee" / "empty.jpg"]
    assert {path for path, (_, _, reason) in verdicts.items() if reason} == {str(path) for path in bad}
    caplog.clear()  # --no-check: no check before training; each bad file is skipped when a batch reads it
    tiny_train(image_folder, tmp_path / "runs", epochs=1, no_check=True)
    assert "skipping 2 unreadable image(s)" not in caplog.text
    assert "skipped unreadable image" in caplog.text and "broken.png" in caplog.text
    with pytest.raises(ValueError, match="--strict refuses unreadable images, which --no-check does not look for"):
        tiny_train(image_folder, tmp_path / "others", strict=True, no_check=True)
    assert not (tmp_path / "others").exists()
    assert result.metrics["epoch"] == 1
    for path in (image_folder / "val" / "bee").glob("*.png"):  # none of bee's validation images left
        path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"skipping unreadable images, 'bee' has no val images left: fix or"):
        tiny_train(image_folder, tmp_path / "runs", epochs=1)


def test_early_stopping(image_folder, tmp_path, capsys):
    result = tiny_train(
        image_folder,
        tmp_path / "runs",
        epochs=6,
        lr=1e-12,
        sched="none",
        warmup_epochs=0,
        patience=2,
        freeze_features=True,
    )
    assert result.stopped_early and result.metrics["epoch"] == 3
    assert "early stop: validation top-1 did not improve for 2 epochs" in capsys.readouterr().out


def test_fine_tuning_with_frozen_features(image_folder, tmp_path):
    source = tiny_train(image_folder, tmp_path / "runs", epochs=1)
    before = torch.load(source.run_dir / "best.pt", weights_only=True)["state_dict"]
    tuned = tiny_train(
        image_folder, tmp_path / "runs", epochs=1, pretrained=str(source.run_dir / "best.pt"), freeze_features=True
    )
    after = torch.load(tuned.run_dir / "best.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("features."))
    assert not torch.equal(before["classifier.1.weight"], after["classifier.1.weight"])


def test_tensorboard_events(image_folder, tmp_path):
    pytest.importorskip("tensorboard")
    result = tiny_train(image_folder, tmp_path / "runs", epochs=1, tensorboard=True)
    assert any(p.name.startswith("events.out.tfevents") for p in result.run_dir.iterdir())


def test_cli_trains_and_reports(image_folder, tmp_path, capsys):
    code = main(
        ["train", "--data", str(image_folder), "--out", str(tmp_path / "runs"), "--model", "vgg11", "--head",
         "compact", "--width-mult", "0.125", "--img-size", "32", "--epochs", "1", "--batch-size", "8",
         "--workers", "1", "--precision", "fp32"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "best val top-1" in out
    assert (tmp_path / "runs" / "exp" / "best.pt").exists()
    assert main(["train", "--data", str(image_folder), "--epochs", "0"]) == 2
    assert "vggnet train: error: --epochs must be at least 1" in capsys.readouterr().err


def test_cli_writes_the_digits(tmp_path, capsys):
    assert main(["data", "digits", "--out", str(tmp_path / "digits")]) == 0
    assert "train/ 1437 images" in capsys.readouterr().out
    assert len(list((tmp_path / "digits" / "val").rglob("*.png"))) == 360
