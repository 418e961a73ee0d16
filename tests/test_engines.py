"""The streaming engine: every input gets exactly one row equal to what `vggnet.Predictor` and `vggnet.embed` say,
across shards, with bad inputs as error rows; a stopped job resumes to the same rows; lists and tables as inputs."""

import csv
import json
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import rows_by_path

import vggnet
from vggnet.cli import main
from vggnet.engines import PredictTask, collect_inputs, stream, stream_embed, stream_predict


def test_predict_rows_equal_the_predictors_records_across_shards(trained, job_inputs, tmp_path, trained_predictor):
    out = tmp_path / "labels.parquet"
    result = stream_predict(trained[0], job_inputs, out, topk=2, shard_size=5, batch_size=4, device="cpu",
                            precision="fp32")  # fmt: skip
    expected = {record["path"]: record for record in trained_predictor(job_inputs, topk=2)}
    rows = rows_by_path(out)
    assert set(rows) == set(expected) and (result.rows, result.errors) == (38, 2)
    assert result.shards == 8 and len(list(out.glob("part-*.parquet"))) == 8 and result.skipped == 0
    for path, record in expected.items():
        row = rows[path]
        if "error" in record:
            assert row["error"] == record["error"] and row["top_class"] is None
        else:
            assert row["error"] is None
            assert row["top_class"] == [t["class"] for t in record["top"]]
            assert row["top_index"] == [t["index"] for t in record["top"]]
            np.testing.assert_allclose(row["top_prob"], [t["prob"] for t in record["top"]], atol=1e-6)
    metadata = json.loads(pq.read_schema(out / "part-000000.parquet").metadata[b"vggnet"])
    assert metadata == {"task": "predict", "topk": 2, "classes": ["ant", "bee", "cat"]}


def test_embed_rows_equal_embed_with_a_fixed_size_vector(trained, job_inputs, tmp_path):
    out = tmp_path / "vectors.parquet"
    stream_embed(trained[0], job_inputs, out, layer="pool5", normalize=True, shard_size=16, workers=1, device="cpu",
                 precision="fp32")  # fmt: skip
    reference = vggnet.embed(trained[0], job_inputs, layer="pool5", normalize=True, device="cpu", precision="fp32")
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), reference.features.shape[1])
    metadata = json.loads(table.schema.metadata[b"vggnet"])
    assert (metadata["layer"], metadata["dim"]) == ("pool5", reference.features.shape[1])
    rows = rows_by_path(out)
    for path, vector in zip(reference.paths, reference.features, strict=True):
        np.testing.assert_allclose(rows[path]["embedding"], vector, atol=1e-5)
    assert {path for path, row in rows.items() if row["error"]} == {error["path"] for error in reference.errors}


class StopAfter:
    """A task that stops the job (as Ctrl-C does) on its `batches`+1-th batch."""

    def __init__(self, task, batches: int) -> None:
        self.task, self.left = task, batches

    def __getattr__(self, name):
        return getattr(self.task, name)

    def __call__(self, images):
        if self.left == 0:
            raise KeyboardInterrupt
        self.left -= 1
        return self.task(images)


def test_a_stopped_job_resumes_to_the_same_rows(trained, job_inputs, tmp_path):
    loaded = vggnet.load_for_inference(trained[0], device="cpu", precision="fp32")
    entries = collect_inputs(job_inputs)
    whole = tmp_path / "whole.parquet"
    stream(PredictTask(loaded), entries, whole, shard_size=6, batch_size=4)
    out = tmp_path / "resumed.parquet"
    with pytest.raises(KeyboardInterrupt):
        stream(StopAfter(PredictTask(loaded), batches=4), entries, out, shard_size=6, batch_size=4)
    written = json.loads((out / "_vggnet.json").read_text())["shards"]
    assert 0 < len(written) < 7  # stopped part way: some shards done, the one being written dropped
    assert sorted(path.name for path in out.iterdir() if path.name.startswith(".")) == []
    result = stream(PredictTask(loaded), entries, out, shard_size=6, batch_size=4)
    assert result.skipped == len(written) and result.rows == len(entries)
    assert rows_by_path(out) == rows_by_path(whole)


def test_a_folder_of_another_job_or_other_inputs_is_refused(trained, job_inputs, tmp_path):
    out = tmp_path / "labels.parquet"
    stream_predict(trained[0], job_inputs, out, shard_size=5, device="cpu")
    with pytest.raises(ValueError, match="another job .*task 'predict' there, 'embed' now"):
        stream_embed(trained[0], job_inputs, out, shard_size=5, device="cpu")
    (tmp_path / "notes.png").rename(tmp_path / "a notes.png")  # the inputs now sort differently: same count
    with pytest.raises(ValueError, match="the inputs changed since"):
        stream_predict(trained[0], [job_inputs[0], str(tmp_path / "a notes.png"), job_inputs[2]], out, shard_size=5,
                       device="cpu")  # fmt: skip
    with pytest.raises(ValueError, match="must name a folder ending in .parquet"):
        stream_predict(trained[0], job_inputs, tmp_path / "labels", device="cpu")


@pytest.mark.parametrize("kind", ["txt", "csv", "parquet"])
def test_lists_and_tables_of_paths_relative_to_their_folder(trained, tmp_path, kind):
    images = sorted((trained[1] / "val").rglob("*.png"))[:3]
    named = [str(path.relative_to(trained[1])) for path in images] + ["missing.png"]
    listing = trained[1] / f"list.{kind}"
    if kind == "txt":
        listing.write_text("\n".join(named) + "\n\n")
    elif kind == "csv":
        with open(listing, "w", newline="") as f:
            csv.writer(f).writerows([["file", "label"], *[[name, "x"] for name in named]])
    else:
        pq.write_table(pa.table({"file": named, "label": ["x"] * len(named)}), listing)
    column = "path" if kind == "txt" else "file"
    entries = collect_inputs([], [listing], path_column=column)
    assert [entry.path for entry in entries] == named  # as the list wrote them: the key to join back
    assert [entry.file for entry in entries[:3]] == [str(path) for path in images]
    assert [entry.error for entry in entries] == [None, None, None, "no such file or folder"]
    if kind != "txt":
        with pytest.raises(ValueError, match="has no column 'path' .*--path-column"):
            collect_inputs([], [listing])


def test_a_table_of_filenames_beside_an_images_folder_as_mini_imagenet_keeps_them(trained, tmp_path):
    images = sorted((trained[1] / "val").rglob("*.png"))[:4]
    (tmp_path / "mini" / "images").mkdir(parents=True)
    for image in images:
        (tmp_path / "mini" / "images" / image.name).write_bytes(image.read_bytes())
    names = [image.name for image in images]
    with open(tmp_path / "mini" / "train.csv", "w", newline="") as f:
        csv.writer(f).writerows([["filename", "label"], *[[name, "n01532829"] for name in names]])
    entries = collect_inputs([], [tmp_path / "mini" / "train.csv"])  # no --path-column: filename, as training reads
    assert [entry.file for entry in entries] == [str(tmp_path / "mini" / "images" / name) for name in names]
    assert [entry.path for entry in entries] == names and all(entry.error is None for entry in entries)
    moved = tmp_path / "elsewhere"
    (tmp_path / "mini" / "images").rename(moved)
    with pytest.raises(ValueError, match="none of the first 4 images of .*train.csv .*pass --image-root DIR"):
        collect_inputs([], [tmp_path / "mini" / "train.csv"])
    entries = collect_inputs([], [tmp_path / "mini" / "train.csv"], image_root=moved)
    assert [entry.file for entry in entries] == [str(moved / name) for name in names]


def test_the_commands_stream_with_lists_and_report(trained, job_inputs, tmp_path, capsys):
    listing = tmp_path / "paths.txt"
    listing.write_text("notes.png\ngone.png\n")
    out = tmp_path / "v.parquet"
    argv = ["embed", "--model", str(trained[0]), trained[1].as_posix(), "--list", str(listing), "--out", str(out),
            "--shard-size", "10", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 1  # two inputs failed
    assert capsys.readouterr().out.strip() == f"38 rows (2 failed) in 4 shard(s) -> {out}"
    assert main(argv) == 1
    assert "4 of them written by an earlier run" in capsys.readouterr().out
    argv = ["predict", "--model", str(trained[0]), "--list", str(listing), "--out", str(tmp_path / "p.json")]
    assert main(argv) == 2
    assert f"ending in .parquet (--out {tmp_path / 'p.parquet'}); for JSON" in capsys.readouterr().err


def test_the_ray_engine_names_files_for_workers_elsewhere_and_its_missing_extra(trained, tmp_path, monkeypatch):
    from vggnet.engines import ray_data
    from vggnet.engines.tasks import TaskSpec

    monkeypatch.chdir(trained[0].parent)
    (trained[0].parent / "imagenet").write_bytes(b"")  # a file of that name: "imagenet" still means the tag
    spec = ray_data._portable(TaskSpec("predict", trained[0].name, None))
    assert spec.model == trained[0].resolve()  # a Path: a file, wherever the worker runs
    spec = ray_data._portable(TaskSpec("predict", "vgg11", "imagenet"))
    assert (spec.model, spec.pretrained) == ("vgg11", "imagenet")
    spec = ray_data._portable(TaskSpec("predict", "vgg11", f"./{trained[0].name}"))
    assert spec.pretrained == trained[0].resolve()
    (trained[0].parent / "imagenet").unlink()
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ImportError, match=r"--engine ray needs ray: pip install 'vggnet\[ray\]'"):
        stream_predict(trained[0], [str(trained[1])], tmp_path / "labels.parquet", device="cpu", engine="ray")
