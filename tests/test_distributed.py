"""Training under torchrun: 2 CPU processes (gloo) against one process, on tiny generated data; and the image
check shared by the processes, also played in one process by threads."""

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import write_image_folder

import vggnet
from vggnet.cli import main
from vggnet.data import decode
from vggnet.training import scan
from vggnet.training.setup import scan_index

TINY = ["--model", "vgg11_bn", "--head", "compact", "--width-mult", "0.125", "--img-size", "32", "--workers", "0",
        "--precision", "fp32", "--lr", "0.05"]  # fmt: skip


# Only a guard against a hung job (TimeoutExpired): far longer than a tiny job takes on a busy machine.
HANG_GUARD_S = 600


def torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)


@pytest.fixture(scope="module")
def odd_folder(tmp_path_factory):
    """15 validation images: an odd count, which a padding sampler would count 16 times across 2 processes."""
    return write_image_folder(tmp_path_factory.mktemp("ddp") / "data", per_class=10)


def test_two_processes_write_one_run_and_count_each_image_once(odd_folder, tmp_path):
    runs = tmp_path / "runs"
    result = torchrun(["-m", "vggnet", "train", "--data", str(odd_folder), "--out", str(runs), "--epochs", "2",
                       "--batch-size", "4", *TINY])  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["exp"]
    assert result.stdout.count("epoch 2/2") == 1  # only the main process prints
    assert "2 processes (gloo)" in result.stdout and "batch 4 per process (8 in all)" in result.stdout
    best = torch.load(runs / "exp" / "best.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in best["state_dict"])
    single = vggnet.evaluate(runs / "exp" / "best.pt", odd_folder, device="cpu", precision="fp32")
    assert single["num_images"] == 15
    assert best["metrics"]["val_top1"] == pytest.approx(single["top1"])
    assert best["metrics"]["val_loss"] == pytest.approx(single["loss"], rel=1e-4)


def test_two_half_batches_equal_one_full_batch(image_folder, tmp_path):
    """Without dropout or BatchNorm, 2 processes at batch B/2 take the same steps as 1 process at batch B."""
    common = ["--data", str(image_folder), "--epochs", "2", "--deterministic", "--augment", "none", "--dropout",
              "0", *TINY, "--model", "vgg11"]  # fmt: skip
    result = torchrun(["-m", "vggnet", "train", *common, "--out", str(tmp_path / "two"), "--batch-size", "4"])
    assert result.returncode == 0, result.stderr[-3000:]
    vggnet.train(**_settings(common), out=str(tmp_path / "one"), batch_size=8)
    two = torch.load(tmp_path / "two" / "exp" / "last.pt", weights_only=True)["state_dict"]
    one = torch.load(tmp_path / "one" / "exp" / "last.pt", weights_only=True)["state_dict"]
    assert two.keys() == one.keys()
    for key in one:
        torch.testing.assert_close(two[key], one[key], atol=2e-5, rtol=1e-4)


def _settings(argv: list[str]) -> dict:
    """CLI flags as `vggnet.train` keyword arguments."""
    settings, index = {}, 0
    while index < len(argv):
        key = argv[index].removeprefix("--").replace("-", "_")
        if key == "deterministic":
            settings[key], index = True, index + 1
            continue
        value = argv[index + 1]
        for kind in (int, float):
            try:
                value = kind(value)
                break
            except ValueError:
                pass
        settings[key], index = value, index + 2
    return settings


@pytest.mark.parametrize("nproc", [["--nproc", "3"], ["--nproc=3"]])
def test_nproc_runs_the_same_command_in_processes_set_up_as_torchrun_sets_them_up(monkeypatch, capsys, nproc):
    from vggnet.training import launcher

    started = []

    class Process:  # each ends at once: rank 1 with a failure
        def __init__(self, command, env):
            started.append((command, env))
            self.returncode, self.pid = 7 if env["RANK"] == "1" else 0, 0

        def poll(self):
            return self.returncode

    monkeypatch.setattr(launcher.subprocess, "Popen", Process)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(launcher, "usable_cores", lambda: 8)
    assert main(["train", "--data", "photos", *nproc, "--epochs", "2"]) == 7
    assert [command for command, _ in started] == [[sys.executable, "-m", "vggnet", "train", "--data", "photos",
                                                    "--epochs", "2"]] * 3  # fmt: skip
    environments = [env for _, env in started]
    assert [(env["RANK"], env["LOCAL_RANK"]) for env in environments] == [("0", "0"), ("1", "1"), ("2", "2")]
    for env in environments:
        assert env["WORLD_SIZE"] == env["LOCAL_WORLD_SIZE"] == "3" and env["OMP_NUM_THREADS"] == "2"
        assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("127.0.0.1", environments[0]["MASTER_PORT"])
    assert capsys.readouterr().err.splitlines()[-1] == (
        "running 3 processes (as torchrun --standalone --nproc-per-node 3 would): vggnet train --data photos --epochs 2"
    )


def test_ctrl_c_stops_every_process_of_nproc_and_saves_once_without_a_traceback(image_folder, tmp_path):
    """The terminal's Ctrl-C reaches the whole job (here: its process group): the processes stop at the next batch,
    the first saves last.pt and says how to resume, once; the launcher waits for them and exits 130."""
    command = [sys.executable, "-m", "vggnet", "train", "--nproc", "2", "--data", str(image_folder),
               "--out", str(tmp_path / "runs"), "--epochs", "1000", "--batch-size", "4", *TINY]  # fmt: skip
    job = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output = []
        for line in job.stdout:  # until the first epoch's line: both processes are in the loop
            output.append(line)
            if line.startswith("epoch 1/1000"):
                os.killpg(job.pid, signal.SIGINT)
                break
        output.append(job.stdout.read())
        assert job.wait(timeout=HANG_GUARD_S) == 130
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    text = "".join(output)
    assert "Traceback" not in text, text
    assert text.count("stopping after this batch") == 1 and text.count("training interrupted; last.pt saved") == 1
    last = tmp_path / "runs" / "exp" / "last.pt"
    assert len(torch.load(last, weights_only=True)["progress"]["history"]) >= 1


def test_a_failing_process_ends_the_nproc_job(image_folder, tmp_path):
    from vggnet.training.launcher import launch_processes

    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    code = launch_processes(2, [sys.executable, str(script), "train", "--data", str(image_folder), "--out",
                                str(tmp_path / "runs"), "--epochs", "2", "--batch-size", "4", *TINY])  # fmt: skip
    assert code == 1  # rank 1's RuntimeError; rank 0, waiting for it, was stopped


def test_a_distributed_checkpoint_resumes_in_one_process(image_folder, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main(["train", "--nproc", "2", "--data", str(image_folder), "--out", str(runs), "--epochs", "1",
                 "--batch-size", "4", *TINY])  # fmt: skip
    assert code == 0
    result = vggnet.train(resume=runs / "exp" / "last.pt", epochs=2)
    assert [row["epoch"] for row in [result.metrics]] == [2]
    rows = (runs / "exp" / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in rows] == ["epoch", "1", "2"]


def test_a_distributed_run_resumes_exactly_in_as_many_processes(image_folder, tmp_path):
    """Each process's random state (here: its dropout masks) is saved and restored, so that a 2-process run stopped
    after an epoch and resumed in 2 processes ends with the same weights as one that never stopped."""
    common = ["--data", str(image_folder), "--batch-size", "4", "--deterministic", "--sched", "none",
              "--warmup-epochs", "0", *TINY, "--dropout", "0.5"]  # fmt: skip
    result = torchrun(["-m", "vggnet", "train", *common, "--out", str(tmp_path / "full"), "--epochs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    result = torchrun(["-m", "vggnet", "train", *common, "--out", str(tmp_path / "cut"), "--epochs", "1"])
    assert result.returncode == 0, result.stderr[-3000:]
    last = tmp_path / "cut" / "exp" / "last.pt"
    assert len(torch.load(last, weights_only=True)["rng_by_rank"]) == 2
    result = torchrun(["-m", "vggnet", "train", "--resume", str(last), "--epochs", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    full = torch.load(tmp_path / "full" / "exp" / "last.pt", weights_only=True)["state_dict"]
    resumed = torch.load(last, weights_only=True)["state_dict"]
    for key, value in full.items():
        assert torch.equal(value, resumed[key]), key


FAILING_RANK = """
import sys
import vggnet.training.loop as loop

original = loop._Run._train_one_epoch

def fail_on_rank_1(self, stop):
    if self.distributed.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    return original(self, stop)

loop._Run._train_one_epoch = fail_on_rank_1
from vggnet.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_failing_process_ends_the_job(image_folder, tmp_path):
    script = tmp_path / "failing.py"
    script.write_text(FAILING_RANK)
    # A hang (the healthy process waiting for the failed one) would raise TimeoutExpired.
    result = torchrun([str(script), "train", "--data", str(image_folder), "--out", str(tmp_path / "runs"),
                       "--epochs", "2", "--batch-size", "4", *TINY])  # fmt: skip
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stdout + result.stderr
    assert "epoch 1/2" not in result.stdout  # the healthy process did not go on alone


def test_sync_bn_on_the_cpu_is_refused(image_folder, tmp_path):
    result = torchrun(["-m", "vggnet", "train", "--data", str(image_folder), "--out", str(tmp_path / "runs"),
                       "--epochs", "1", "--sync-bn", *TINY])  # fmt: skip
    assert result.returncode != 0
    assert "--sync-bn needs CUDA devices" in result.stderr


class ThreadProcess:
    """One of `world_size` processes played by threads, as `check_data` sees it: its `gather` and `share` meet the
    other threads at a barrier, and each collective records whether it was patient."""

    def __init__(self, rank: int, world_size: int, barrier: threading.Barrier, slots: list, patience: list) -> None:
        self.rank, self.world_size, self.local_world_size = rank, world_size, world_size
        self.is_main = rank == 0
        self._barrier, self._slots, self._patience = barrier, slots, patience

    def gather(self, value, patient: bool = False) -> list:
        self._patience.append(patient)
        self._slots[self.rank] = value
        self._barrier.wait()
        values = list(self._slots)
        self._barrier.wait()  # no thread overwrites its slot before all have read them
        return values

    def share(self, compute, patient: bool = False):
        return self.gather(compute() if self.is_main else None, patient)[0]


def check_in_threads(paths, index, world_size: int) -> tuple[list, list]:
    """Each thread-process's `check_data` result, as (path, reason) pairs; and the patience of every collective."""
    barrier, slots, patience = threading.Barrier(world_size, timeout=HANG_GUARD_S), [None] * world_size, []
    processes = [ThreadProcess(rank, world_size, barrier, slots, patience) for rank in range(world_size)]
    with ThreadPoolExecutor(world_size) as pool:
        results = list(pool.map(lambda process: scan.check_data(paths, index, process), processes))
    return [[(error.path, error.reason) for error in result] for result in results], patience


@pytest.mark.parametrize("world_size", [2, 3])
def test_processes_share_the_check_each_file_decoded_once(tmp_path, monkeypatch, caplog, capsys, world_size):
    paths = sorted(write_image_folder(tmp_path / "data", per_class=3, split=False).rglob("*.png"))
    bad = tmp_path / "data" / "bee" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    paths.insert(4, bad)
    decoded, load = [], decode.load_rgb
    monkeypatch.setattr(decode, "load_rgb", lambda path, min_size=None: decoded.append(path) or load(path, min_size))
    writes, write_index = [], scan.write_index
    monkeypatch.setattr(scan, "write_index", lambda *args: writes.append(args) or write_index(*args))
    index = tmp_path / "scans" / "index.json"
    monkeypatch.setattr(scan, "ANNOUNCE_AT", 3)  # as if 3 images made a long check
    caplog.set_level("INFO", logger="vggnet")

    results, patience = check_in_threads(paths, index, world_size)
    share = len(paths[::world_size])  # the main process's
    assert caplog.messages == [f"checking {share} images new or changed since the last check (this process's "
                               f"share; each of the {world_size} processes checks its own)"]  # fmt: skip
    assert "checking images" not in capsys.readouterr().err  # no progress bar off a terminal
    assert Counter(decoded) == Counter(paths)  # every file decoded, by one process only
    reason = decode.find_unreadable([bad])[0].reason
    assert results == [[(str(bad), reason)]] * world_size  # every process skips the same files
    assert len(writes) == 1  # by the main process
    verdicts = json.loads(index.read_text())["files"]
    assert sorted(verdicts) == sorted(map(str, paths)) and verdicts[str(bad)][2] == reason
    assert patience and all(patience)  # no collective bounded by the process group's timeout

    decoded.clear()
    caplog.clear()
    again, _ = check_in_threads(paths, index, world_size)
    assert decoded == [] and again == results  # every verdict from the index
    assert caplog.messages == []  # nothing to announce

    bad.write_bytes(paths[0].read_bytes())  # repaired
    decoded.clear()
    repaired, _ = check_in_threads(paths, index, world_size)
    assert decoded == [bad] and repaired == [[]] * world_size


# Under torchrun: prepare the data (find it, check it) and write what this process found, checked and kept.
PREPARE_DATA = """
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from vggnet.data import decode
from vggnet.training import setup
from vggnet.training.config import make_config
from vggnet.training.distributed import Distributed

data, out, mode = sys.argv[1:]
distributed, _ = Distributed.from_environment("cpu")
decoded, load_rgb = [], decode.load_rgb


def counting(path, min_size=None):
    if mode == "fail" and distributed.rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    decoded.append(str(path))
    return load_rgb(path, min_size)


decode.load_rgb = counting
if mode == "slow":  # the main process finds the data for longer than the process group lets a collective wait
    dist.set_timeout(timedelta(seconds=2))
    discover_data = setup.discover_data
    setup.discover_data = lambda config: time.sleep(6) or discover_data(config)
splits = setup.prepare_data(make_config({"data": data}), distributed)
kept = {name: [str(path) for path, _ in samples] for name, samples in (("train", splits.train), ("val", splits.val))}
Path(out, f"rank{distributed.rank}.json").write_text(json.dumps({"decoded": decoded, **kept}))
distributed.close()
"""


def prepare_data_in_two_processes(data, out, mode: str) -> tuple[subprocess.CompletedProcess, list[dict]]:
    """Run PREPARE_DATA in 2 processes; return the run and what each process that finished reported."""
    script = out / "prepare.py"
    script.write_text(PREPARE_DATA)
    result = torchrun([str(script), str(data), str(out), mode])
    return result, [json.loads(path.read_text()) for path in sorted(out.glob("rank*.json"))]


def test_two_processes_share_the_check_and_wait_out_a_slow_discovery(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=4)
    bad = [data / "train" / "ant" / "broken.png", data / "val" / "cat" / "empty.jpg"]
    bad[0].write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    bad[1].write_bytes(b"")
    files = sorted(str(path) for path in data.rglob("*.*"))
    (tmp_path / "cold").mkdir()
    result, reports = prepare_data_in_two_processes(data, tmp_path / "cold", "slow")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(reports) == 2
    assert sorted(reports[0]["decoded"] + reports[1]["decoded"]) == files  # each file checked once, in all
    assert reports[0]["decoded"] and reports[1]["decoded"]
    assert reports[0]["train"] == reports[1]["train"] and reports[0]["val"] == reports[1]["val"]
    kept = reports[0]["train"] + reports[0]["val"]
    assert sorted(kept) == sorted(set(files) - set(map(str, bad)))
    verdicts = json.loads(scan_index(data).read_text())["files"]
    assert sorted(verdicts) == files
    assert sorted(path for path, (_, _, reason) in verdicts.items() if reason) == sorted(map(str, bad))

    (tmp_path / "warm").mkdir()
    result, warm = prepare_data_in_two_processes(data, tmp_path / "warm", "plain")
    assert result.returncode == 0, result.stderr[-3000:]
    assert [report["decoded"] for report in warm] == [[], []]  # every verdict from the index
    assert [report["train"] for report in warm] == [reports[0]["train"]] * 2


def test_a_process_failing_in_the_check_ends_the_job(image_folder, tmp_path):
    """The main process waits for the others' verdicts without the process group's timeout; a process that dies
    still ends the job at once (torchrun stops the others)."""
    # A hang (the main process waiting for the failed one) would raise TimeoutExpired.
    result, reports = prepare_data_in_two_processes(image_folder, tmp_path, "fail")
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stdout + result.stderr
    assert reports == []  # the main process did not go on alone
