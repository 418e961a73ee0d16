"""Labelled tables as `--data`: CSV and Parquet tables, mini-ImageNet's folder of tables, split columns, image roots,
every refusal's message, and eval on a table against eval on the same images in class folders."""

import csv
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from conftest import tiny_train, write_image_folder
from PIL import Image

import vggnet
from vggnet.cli import main
from vggnet.data import Preprocess, TableColumns, discover_splits, evaluation_samples_of, read_columns, splits_of
from vggnet.data.tables import image_folder
from vggnet.infer.evaluate import evaluate
from vggnet.infer.source import LoadedModel


def write_table(path, columns: dict[str, list]):
    """A CSV or Parquet table (by `path`'s suffix) of `columns`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pq.write_table(pa.table(columns), path)
    else:
        with open(path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            writer.writerows(zip(*columns.values(), strict=True))
    return path


def images_of(folder):
    """(image, class) of class folders, in the order `discover_splits` scans them: by class, then by path."""
    return [(path, path.parent.name) for path in sorted(folder.rglob("*.png"))]


def table_of(folder, table):
    """A table of the images of class folders, its paths relative to the table's folder."""
    images = images_of(folder)
    paths = [os.path.relpath(path, table.parent) for path, _ in images]
    return write_table(table, {"path": paths, "label": [label for _, label in images]})


def write_mini_imagenet(root, splits: dict[str, list[str]], per_class=6):
    """mini-ImageNet's layout: images/<wnid><8 digits>.jpg, and a table of filename,label for each split."""
    classes = sorted({wnid for wnids in splits.values() for wnid in wnids})
    staging = write_image_folder(root / "staging", classes=tuple(classes), per_class=per_class, split=False)
    (root / "images").mkdir()
    for split, wnids in splits.items():
        names = [f"{wnid}{i:08d}.jpg" for wnid in wnids for i in range(per_class)]
        for name in names:
            Image.open(staging / name[:9] / f"{name[:9]}_{int(name[9:17]):03d}.png").save(root / "images" / name)
        write_table(root / f"{split}.csv", {"filename": names, "label": [name[:9] for name in names]})
    for path in sorted(staging.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    staging.rmdir()
    return root


MINI = {"train": ["n01532829", "n01558993"], "val": ["n01855672"], "test": ["n01930112"]}  # disjoint, as published


# ---- splits ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_table_splits_as_the_same_class_folders_do(tmp_path, suffix):
    folder = write_image_folder(tmp_path / "images", per_class=10, split=False)
    table = table_of(folder, tmp_path / f"labels{suffix}")
    splits = splits_of(table, val_split=0.3, seed=2)
    reference = discover_splits(folder, val_split=0.3, seed=2)
    assert splits.classes == reference.classes == ["ant", "bee", "cat"]
    assert (splits.train, splits.val) == (reference.train, reference.val)
    assert splits.layout == f"table labels{suffix}, 30% held out per class"
    assert splits_of(table, val_split=0.3, seed=3).val != splits.val


def test_a_split_column_and_an_image_root(tmp_path):
    photos = write_image_folder(tmp_path / "photos")
    train, val = images_of(photos / "train"), images_of(photos / "val")
    table = write_table(
        tmp_path / "meta" / "labels.parquet",
        {
            "file": [os.path.relpath(path, photos) for path, _ in val + train] + ["test/x.png"],
            "class": [label for _, label in val + train] + ["ant"],
            "subset": ["Valid"] * len(val) + ["train"] * len(train) + ["test"],  # any case; test rows left out
        },
    )
    columns = TableColumns(path="file", label="class", split="subset", image_root=str(photos))
    splits = splits_of(table, columns)
    assert splits.layout == "table labels.parquet, split by column 'subset'"
    assert splits.classes == ["ant", "bee", "cat"]
    assert sorted(splits.train) == sorted((path, ["ant", "bee", "cat"].index(label)) for path, label in train)
    assert sorted(splits.val) == sorted((path, ["ant", "bee", "cat"].index(label)) for path, label in val)


def test_mini_imagenet_folders(tmp_path):
    pooled = write_mini_imagenet(tmp_path / "few-shot", MINI)
    splits = splits_of(pooled)
    assert (
        splits.layout == "tables train.csv + val.csv + test.csv pooled (their classes differ), 20% held out per class"
    )
    assert splits.classes == sorted(wnid for wnids in MINI.values() for wnid in wnids)
    assert splits.counts() == {"train": [5, 5, 5, 5], "val": [1, 1, 1, 1]}
    assert all(path.parent == pooled / "images" for path, _ in splits.train + splits.val)
    # The train table alone: its images found in images/ beside it, split by --val-split.
    alone = splits_of(pooled / "train.csv", val_split=0.5)
    assert alone.layout == "table train.csv, 50% held out per class" and alone.counts()["val"] == [3, 3]
    assert image_folder(pooled / "train.csv", ["n0153282900000000.jpg"]) == pooled / "images"
    # Tables of the same classes are the splits, in Parquet too.
    same = write_mini_imagenet(tmp_path / "same", {"train": MINI["train"], "val": MINI["train"]}, per_class=3)
    for name in ("train", "val"):
        rows = read_columns(same / f"{name}.csv", {"filename": "", "label": ""})
        write_table(same / f"{name}.parquet", rows)
        (same / f"{name}.csv").unlink()
    splits = splits_of(same)
    assert splits.layout == "tables train.parquet + val.parquet"
    assert splits.counts() == {"train": [3, 3], "val": [3, 3]}
    # Evaluation reads the val table, else the test table.
    classes = ["n01532829", "n01558993", "n01855672", "n01930112"]
    assert {label for _, label in evaluation_samples_of(pooled, classes)} == {2}
    (pooled / "val.csv").unlink()
    assert {label for _, label in evaluation_samples_of(pooled, classes)} == {3}


def test_read_columns_of_spreadsheet_csv_and_parquet(tmp_path):
    exported = tmp_path / "excel.csv"
    exported.write_bytes("\ufeffpath,label,note\r\na.png,cat,x\r\n\r\nb.png,dog\r\n".encode())  # BOM, blank, short
    assert read_columns(exported, {"path": "", "note": ""}) == {"path": ["a.png", "b.png"], "note": ["x", ""]}
    table = write_table(tmp_path / "t.parquet", {"path": ["a.png", None], "label": [3, 7]})
    assert read_columns(table, {"path": "", "label": ""}) == {"path": ["a.png", ""], "label": ["3", "7"]}


# ---- refusals -------------------------------------------------------------------------------------------------


@pytest.fixture
def labelled(tmp_path):
    """A CSV table of 3 classes of 4 images each, beside the folder of its images."""
    folder = write_image_folder(tmp_path / "images", per_class=4, split=False)
    return table_of(folder, tmp_path / "labels.csv")


def _rewrite(table, edit):
    """`table` with each row ({"path": ..., "label": ...}; ant's four, then bee's, then cat's) replaced by
    `edit(index, row)`, or left out where that is None."""
    columns = read_columns(table, {"path": "", "label": ""})
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    rows = [edited for index, row in enumerate(rows) if (edited := edit(index, row)) is not None]
    return write_table(table, {name: [row[name] for row in rows] for name in rows[0]})


@pytest.mark.parametrize(
    ("arrange", "message"),
    [
        (lambda t: (t.parent / "nope.csv", {}), r"--data .*nope\.csv: no such file"),
        (lambda t: (t.with_suffix(".txt").write_text("x") and t.with_suffix(".txt"), {}),
         r"labels\.txt is a file but not a table; pass a \.csv or \.parquet table, or a folder"),
        (lambda t: (t, {"columns": TableColumns(path="file")}),
         r"labels\.csv has no column 'file' \(it has: path, label\); name it with --path-column"),
        (lambda t: (t, {"columns": TableColumns(label="class")}), r"no column 'class' .*name it with --label-column"),
        (lambda t: (t, {"columns": TableColumns(split="split")}), r"no column 'split' .*name it with --split-column"),
        (lambda t: (write_table(t, {"image": ["a"], "label": ["b"]}), {}),
         r"no column 'path' \(it has: image, label\); name it with --path-column"),
        (lambda t: (_rewrite(t, lambda i, row: {**row, "label": " "} if i == 2 else row), {}),
         r"has 1 row\(s\) with no label in column 'label' \(the first: row 3 after the header\); give every row a "
         r"label, or remove those rows"),
        (lambda t: (_rewrite(t, lambda i, row: {**row, "path": ""} if i == 11 else row), {}),
         r"1 row\(s\) with no path in column 'path' \(the first: row 12 after the header\)"),
        (lambda t: (_rewrite(t, lambda i, row: {**row, "label": "ant"}), {}),
         r"has 1 label\(s\) in column 'label' \(ant\); a classifier needs two or more"),
        (lambda t: (_rewrite(t, lambda i, row: row if i < 9 else None), {}),  # a single cat
         r"classes \['cat'\] have a single image.*or mark each row train or val in a column that --split-column"),
        (lambda t: (t, {"val_split": 0.0}), r"--val-split must be in \(0, 1\) to hold images out of data without a "
                                             r"val split, got 0.0; e.g. 0.2"),
        (lambda t: (_rewrite(t, lambda i, row: {**row, "split": "train" if i < 8 else "test"}),
                    {"columns": TableColumns(split="split")}),
         r"column 'split' of .* has no 'val' or 'valid' or 'validation' rows \(its values: test, train\)"),
        (lambda t: (_rewrite(t, lambda i, row: {**row, "split": "val" if i in (0, 4) else "train"}),
                    {"columns": TableColumns(split="split")}),
         r"every class of .* needs train and val rows \(only in train: cat; only in val: none\)"),
        (lambda t: (t, {"columns": TableColumns(image_root=str(t.parent / "nowhere"))}),
         r"--image-root .*nowhere is not a folder"),
        (lambda t: (t, {"columns": TableColumns(image_root=str(t.parent / "images" / "ant"))}),
         r"none of the first 10 images of .*labels\.csv \(e\.g\. 'images/ant/ant_000\.png'\) is under --image-root "
         r".*ant; pass --image-root DIR"),
        (lambda t: (t.rename(t.parent / "images" / "labels.csv"), {}),
         r"none of the first 10 images .* is in .*images or .*images/images; pass --image-root DIR, the folder"),
        (lambda t: (t.parent / "images", {"columns": TableColumns(split="s", image_root="x")}),
         r"--split-column applies to tables \(a \.csv or \.parquet file, or a folder of train\.csv, val\.csv\.\.\.\), "
         r"and --data .*images is not one: drop --split-column and --image-root, or pass a table"),
        (lambda t: (t.rename(t.parent / "val.csv").parent, {}),
         r"has tables \(val\.csv\) but no train\.csv or train\.parquet to train on"),
        (lambda t: (t.rename(t.parent / "train.csv").parent, {"columns": TableColumns(split="s")}),
         r"--split-column applies to a single table, and .* is a folder of tables.*--data .*train\.csv"),
    ],
)  # fmt: skip
def test_unusable_tables_are_refused(labelled, arrange, message):
    data, options = arrange(labelled)
    with pytest.raises(ValueError, match=message):
        splits_of(data, **options)


def test_tables_of_partly_shared_classes_are_refused(tmp_path):
    data = write_mini_imagenet(tmp_path / "mini", {"train": MINI["train"], "val": MINI["train"][:1] + MINI["val"]})
    with pytest.raises(ValueError, match=r"the labels of .*train\.csv and .*val\.csv differ \(only in train\.csv: "
                       r"n01558993; only in val\.csv: n01855672\); give both tables the same classes, or entirely "
                       r"different ones"):  # fmt: skip
        splits_of(data)


def test_table_settings_with_class_folders_are_refused_by_the_cli(image_folder, tmp_path, capsys):
    argv = ["train", "--data", str(image_folder), "--label-column", "class", "--out", str(tmp_path / "runs")]
    assert main(argv) == 2
    assert "vggnet train: error: --label-column applies to tables" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# ---- training -------------------------------------------------------------------------------------------------


def test_training_on_a_table_skips_a_missing_image_or_refuses_it(tmp_path, capsys, caplog):
    photos = write_image_folder(tmp_path / "photos")
    train, val = images_of(photos / "train"), images_of(photos / "val")
    rows = train + [(photos / "train" / "ant" / "gone.png", "ant")] + val
    table = write_table(
        tmp_path / "meta" / "labels.csv",
        {
            "file": [os.path.relpath(path, photos) for path, _ in rows],
            "label": [label for _, label in rows],
            "split": ["train"] * (len(train) + 1) + ["val"] * len(val),
        },
    )
    settings = {"path_column": "file", "split_column": "split", "image_root": str(photos)}
    with pytest.raises(ValueError, match=r"1 unreadable image\(s\) \(--strict\):\n  .*gone\.png: no such file"):
        tiny_train(table, tmp_path / "runs", strict=True, **settings)
    assert not (tmp_path / "runs").exists()
    result = tiny_train(table, tmp_path / "runs", epochs=1, **settings)
    out = capsys.readouterr().out
    assert f"data {table} (table labels.csv, split by column 'split'): 3 classes, 25 train, 12 val" in out
    assert "skipping 1 unreadable image(s)" in caplog.text and "gone.png: no such file" in caplog.text
    saved = yaml.safe_load((result.run_dir / "config.yaml").read_text())
    assert {name: saved[name] for name in settings} == settings and saved["label_column"] == "label"
    best = torch.load(result.run_dir / "best.pt", weights_only=True)
    assert best["classes"] == ["ant", "bee", "cat"]
    # The run validated on the table's val rows: eval on the same images in class folders scores the same.
    folders = evaluate(result.run_dir / "best.pt", photos, device="cpu", precision="fp32")
    assert folders["top1"] == pytest.approx(best["metrics"]["val_top1"])
    assert folders["loss"] == pytest.approx(best["metrics"]["val_loss"], rel=1e-4)


def test_the_cli_trains_on_a_mini_imagenet_folder_and_evaluates_on_its_val_table(tmp_path, capsys):
    data = write_mini_imagenet(tmp_path / "mini-imagenet", MINI)
    runs = tmp_path / "runs"
    argv = ["train", "--data", str(data), "--out", str(runs), "--model", "vgg11", "--head", "compact",
            "--width-mult", "0.125", "--img-size", "32", "--epochs", "1", "--batch-size", "8", "--workers", "0",
            "--precision", "fp32"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "(tables train.csv + val.csv + test.csv pooled (their classes differ), 20% held out per class): " in out
    assert "4 classes, 20 train, 4 val" in out
    checkpoint = runs / "exp" / "best.pt"
    argv = ["eval", "--model", str(checkpoint), "--data", str(data), "--format", "json", "--out",
            str(tmp_path / "eval"), "--precision", "fp32"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["evaluated_classes"] == MINI["val"] and report["num_images"] == 6


# ---- evaluation -----------------------------------------------------------------------------------------------


def test_eval_on_a_table_equals_eval_on_the_class_folders(trained, tmp_path, capsys):
    checkpoint, data = trained
    reference = evaluate(checkpoint, data, device="cpu", precision="fp32")  # data/val/'s class folders
    val = images_of(data / "val")[::-1]  # another order: the scores do not depend on it
    table = write_table(
        tmp_path / "val.parquet", {"path": [str(path) for path, _ in val], "label": [c for _, c in val]}
    )
    report = evaluate(checkpoint, table, device="cpu", precision="fp32")
    assert report["num_images"] == reference["num_images"] == 12
    assert report["top1"] == pytest.approx(reference["top1"]) and report["top5"] == reference["top5"]
    assert report["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert report["confusion_matrix"] == reference["confusion_matrix"]
    assert report["per_class"] == reference["per_class"]
    # The CLI's table flags: relative paths under --image-root, the val rows of a split column.
    rows = images_of(data / "train") + images_of(data / "val")
    table = write_table(
        tmp_path / "all.csv",
        {
            "file": [os.path.relpath(path, data) for path, _ in rows],
            "class": [label for _, label in rows],
            "subset": ["train"] * 24 + ["val"] * 12,
        },
    )
    argv = ["eval", "--model", str(checkpoint), "--data", str(table), "--path-column", "file", "--label-column",
            "class", "--split-column", "subset", "--image-root", str(data), "--format", "json", "--out",
            str(tmp_path / "eval"), "--precision", "fp32", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["num_images"] == 12 and report["top1"] == pytest.approx(reference["top1"])
    assert report["confusion_matrix"] == reference["confusion_matrix"]


def test_eval_on_a_table_of_wordnet_ids_equals_eval_on_their_folders(tmp_path, caplog):
    wordnet = ("n01440764", "n02012849", "n03126707")  # tench, crane bird, crane
    folder = write_image_folder(tmp_path / "val", classes=wordnet, per_class=2, split=False)
    table = table_of(folder, tmp_path / "val.csv")
    torch.manual_seed(0)
    network = vggnet.create_model("vgg11", width_mult=0.125).eval()
    classes = vggnet.imagenet_categories()
    loaded = LoadedModel(network, classes, Preprocess.imagenet(32, crop_pct=1.0), torch.device("cpu"), "fp32", "vgg11")
    reference = evaluate(loaded, folder)
    report = evaluate(loaded, table)
    assert report["evaluated_classes"] == reference["evaluated_classes"] == ["tench", "crane bird", "crane"]
    assert report["confusion_matrix"] == reference["confusion_matrix"]
    assert report["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    assert "evaluating on 3 of the model's 1000 classes (no row for: " in caplog.text


def test_eval_refusals_name_the_fix(trained, tmp_path):
    checkpoint, data = trained
    classes = ["ant", "bee", "cat"]
    table = write_table(tmp_path / "t.csv", {"path": [str(next(data.rglob("*.png")))] * 2, "label": ["ant", "cow"]})
    with pytest.raises(ValueError, match=r"the labels of .*t\.csv \(column 'label'\) differ from the model's classes "
                       r"\(missing: \['bee', 'cat'\]; not the model's: \['cow'\]\); label the rows with the model's "
                       r"classes: ant, bee, cat"):  # fmt: skip
        evaluation_samples_of(table, classes)
    mini = write_mini_imagenet(tmp_path / "mini", {"train": MINI["train"]}, per_class=2)
    with pytest.raises(ValueError, match=r"mini has no val, valid, validation or test table \(\.csv or \.parquet\) "
                       r"to evaluate on; pass --data .*train\.csv"):  # fmt: skip
        evaluation_samples_of(mini, classes)
    with pytest.raises(ValueError, match=r"--split-column applies to tables .* --data .* is not one"):
        evaluate(checkpoint, data, split_column="subset")
