"""The Ray engine on a local Ray cluster sized for 2 cores: the same rows as the one-process engine (which the
engine tests compare with `vggnet.Predictor` and `vggnet.embed`), a job resumed by either engine, and a model actor
killed mid-job, after which Ray's retries still give every row exactly once."""

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from conftest import rows_by_path, write_image_folder
from serving import wait_for

import vggnet
from vggnet.cli import main
from vggnet.engines import stream_embed, stream_predict

pytestmark = pytest.mark.slow  # a Ray cluster takes seconds to start and each job seconds to plan

ACTOR = b"MapWorker(MapBatches(_Inference))"  # the process title Ray gives the model actors


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local cluster for the module: 2 CPUs, one model actor (1 CPU) beside decoding tasks (0.5 CPU each)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def assert_same_rows(ours: dict, theirs: dict, column: str, atol: float) -> None:
    assert ours.keys() == theirs.keys()
    for path, row in theirs.items():
        assert ours[path]["error"] == row["error"]
        for name, value in row.items():
            if name == column and value is not None:
                np.testing.assert_allclose(ours[path][name], value, atol=atol)
            else:
                assert ours[path][name] == value, (path, name)


def test_predict_and_embed_rows_equal_the_one_process_engines(trained, job_inputs, tmp_path):
    options = {"shard_size": 10, "batch_size": 4, "device": "cpu", "precision": "fp32"}
    for verb, column, extra in ((stream_predict, "top_prob", {"topk": 2}), (stream_embed, "embedding", {})):
        local = verb(trained[0], job_inputs, tmp_path / f"{verb.__name__}-local.parquet", **extra, **options)
        on_ray = verb(
            trained[0], job_inputs, tmp_path / f"{verb.__name__}-ray.parquet", engine="ray", **extra, **options
        )
        assert (on_ray.rows, on_ray.errors, on_ray.shards) == (local.rows, local.errors, local.shards) == (38, 2, 4)
        assert pq.read_schema(on_ray.out / "part-000000.parquet") == pq.read_schema(local.out / "part-000000.parquet")
        assert_same_rows(rows_by_path(on_ray.out), rows_by_path(local.out), column, atol=1e-4)


def test_a_job_started_by_one_engine_is_finished_by_the_other(trained, job_inputs, tmp_path):
    whole = stream_predict(trained[0], job_inputs, tmp_path / "whole.parquet", shard_size=10, device="cpu")
    out = tmp_path / "resumed.parquet"
    stream_predict(trained[0], job_inputs[:1], tmp_path / "first.parquet", shard_size=10, device="cpu")
    for shard in ("part-000000.parquet", "part-000001.parquet"):  # the first 20 inputs, as a stopped run left them
        out.mkdir(exist_ok=True)
        (out / shard).write_bytes((tmp_path / "first.parquet" / shard).read_bytes())
    record = json.loads((whole.out / "_vggnet.json").read_text())
    record["shards"] = {key: value for key, value in record["shards"].items() if key in ("0", "1")}
    (out / "_vggnet.json").write_text(json.dumps(record))
    result = stream_predict(trained[0], job_inputs, out, shard_size=10, device="cpu", engine="ray")
    assert (result.skipped, result.rows, result.errors) == (2, 38, 2)
    assert rows_by_path(out) == rows_by_path(whole.out)


def test_a_model_actor_killed_mid_job_leaves_every_row_exactly_once(tmp_path):
    images = write_image_folder(tmp_path / "images", classes=("a", "b", "c", "d"), per_class=100, size=64,
                                split=False)  # fmt: skip
    model = vggnet.create_model("vgg11", num_classes=4, head="compact", width_mult=0.25)
    options = {"shard_size": 25, "batch_size": 8, "device": "cpu", "precision": "fp32"}
    reference = stream_embed(model, [str(images)], tmp_path / "reference.parquet", **options)
    out = tmp_path / "killed.parquet"
    outcome = {}

    def job():
        try:
            outcome["result"] = stream_embed(model, [str(images)], out, engine="ray", **options)
        except BaseException as error:  # reported by the test, not lost in the thread
            outcome["error"] = error

    thread = threading.Thread(target=job)
    thread.start()
    record = out / "_vggnet.json"
    wait_for(
        lambda: not thread.is_alive() or (record.is_file() and json.loads(record.read_text())["shards"]),
        "the job's first shard or its end",
        timeout=300,
    )
    killed = [pid for pid in actor_pids() if _kill(pid)]
    written = len(json.loads(record.read_text())["shards"]) if record.is_file() else 0
    assert killed and thread.is_alive() and written < 16, "the job ended before an actor could be killed"
    thread.join(timeout=600)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].rows == reference.rows == 400 and outcome["result"].skipped == 0
    assert_same_rows(rows_by_path(out), rows_by_path(reference.out), "embedding", atol=1e-4)
    assert killed[0] not in actor_pids()  # the rows came from a restarted actor


def test_the_command_line_engine_settings(trained, job_inputs, tmp_path, capsys):
    out = tmp_path / "labels.parquet"
    argv = ["predict", "--model", str(trained[0]), *job_inputs, "--out", str(out), "--engine", "ray",
            "--num-workers", "1", "--cpus-per-worker", "0.5", "--device", "cpu", "--shard-size", "20"]  # fmt: skip
    assert main(argv) == 1  # two inputs failed
    assert "38 rows (2 failed) in 2 shard(s)" in capsys.readouterr().out
    assert len(rows_by_path(out)) == 38
    assert main(["predict", "--model", str(trained[0]), *job_inputs, "--engine", "ray"]) == 2
    assert "--engine ray writes Parquet shards: add --out DIR.parquet" in capsys.readouterr().err
    assert main([*argv[:-4], "--device", "cpu", "--gpus-per-worker", "1"]) == 2
    assert "--gpus-per-worker 1.0 reserves GPUs --device cpu would not use" in capsys.readouterr().err


def test_a_second_command_joins_the_running_cluster_at_its_address(trained, job_inputs, tmp_path):
    """`--address` joins a running cluster (here the one this module started) instead of starting one."""
    address = ray.get_runtime_context().gcs_address
    out = tmp_path / "vectors.parquet"
    command = [sys.executable, "-m", "vggnet", "embed", "--model", str(trained[0]), *job_inputs, "--out", str(out),
               "--engine", "ray", "--address", address, "--cpus-per-worker", "0.5", "--device", "cpu"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr  # two inputs failed
    assert "38 rows (2 failed)" in done.stdout
    assert (
        "Started a local Ray instance" not in done.stderr
        and f"Connecting to existing Ray cluster at address: {address}" in done.stderr
    )
    assert len(rows_by_path(out)) == 38


def actor_pids() -> list[int]:
    """The processes of this machine's model actors (by the title Ray gives them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ACTOR in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return pids


def _kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
