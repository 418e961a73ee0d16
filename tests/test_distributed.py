"""Training under torchrun: 2 CPU processes (gloo) against one process, on tiny generated data."""

import subprocess
import sys

import pytest
import torch
from conftest import write_image_folder

import vggnet
from vggnet.cli import main

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
def test_nproc_runs_the_same_command_under_torchrun_without_nproc(monkeypatch, capsys, nproc):
    started = []

    def run(command, check):
        started.append(command)
        return subprocess.CompletedProcess(command, returncode=7)

    monkeypatch.setattr(subprocess, "run", run)
    assert main(["train", "--data", "photos", *nproc, "--epochs", "2"]) == 7
    assert started == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3",
                        "-m", "vggnet", "train", "--data", "photos", "--epochs", "2"]]  # fmt: skip
    assert capsys.readouterr().err.splitlines()[-1] == (
        "running: torchrun --standalone --nproc-per-node=3 -m vggnet train --data photos --epochs 2"
    )


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
