"""How long `vggnet` takes to start, against the targets of issue 11, on this machine.

    python benchmarks/startup.py                  # 5 rounds
    python benchmarks/startup.py --rounds 9 --format json

Every case runs in a fresh process; the rounds are interleaved (each round runs every case once), so that a change
in the machine's speed affects all cases alike, and the median of the rounds is reported. The targets:

- `vggnet --help` under 0.5 s (and `--version`): what a user waits for before anything happens.
- `import vggnet` at most 0.3 s more than `import torch` (it imports no torch at all), and so is the first use of
  a name that needs torch (`vggnet.create_model`).
- `vggnet predict` on one image at most what the work itself takes: importing torch (a process that does only that,
  from start to exit, like the `vggnet predict` process), loading the model (`vggnet.load_model`) and one inference
  (`vggnet.predict` on the loaded model), both timed inside one process, plus a slack of
  PREDICT_SLACK_S for starting the interpreter and parsing the command line. (Inference imports no torchvision:
  its import pulls in torch._dynamo, which cost about 2 s here when the evaluation preprocessing used it.)

The model is a tiny vgg11_bn (width 1/8, 32x32 input) trained here for one epoch on a few generated images, so that
model loading and inference are small and the start-up costs show.

The verdicts use wall-clock time, what a user waits for. Each case's CPU time (user + system) is shown beside it:
on a busy machine the wall-clock times grow with the load while the CPU times stay, and the report warns when the
load average exceeds the number of cores.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET_S = 0.5
IMPORT_SLACK_S = 0.3
PREDICT_SLACK_S = 0.25  # a fresh interpreter, the console script and argparse: tens of milliseconds on a quiet machine

# Run in a fresh process: the times of the steps that `vggnet predict` cannot avoid, each after the ones before.
_REFERENCE = """
import json, sys, time

checkpoint, image = sys.argv[1:3]
times = {}
start = time.perf_counter()
import torch

times["import torch"] = time.perf_counter() - start
start = time.perf_counter()
import vggnet

model = vggnet.load_model(checkpoint)
times["load_model"] = time.perf_counter() - start
start = time.perf_counter()
records = vggnet.predict(model, [image], device="cpu")
times["predict"] = time.perf_counter() - start
assert "top" in records[0], records
print(json.dumps(times))
"""


def vggnet_command() -> list[str]:
    """The installed console script beside this interpreter, or `python -m vggnet` where there is none."""
    script = Path(sys.executable).with_name("vggnet")
    return [str(script)] if script.exists() else [sys.executable, "-m", "vggnet"]


def make_checkpoint(folder: Path) -> tuple[Path, Path]:
    """Train a tiny model for one epoch on a few generated images; return (best.pt, one image)."""
    import numpy as np
    from PIL import Image

    import vggnet

    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2)):
        for index, colour in enumerate([(220, 40, 40), (40, 60, 220)]):
            directory = folder / "data" / split / f"class{index}"
            directory.mkdir(parents=True)
            for number in range(count):
                pixels = np.clip(np.array(colour) + rng.integers(-40, 40, size=(32, 32, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(directory / f"{number}.png")
    result = vggnet.train(
        data=str(folder / "data"), out=str(folder / "runs"), model="vgg11_bn", head="compact", width_mult=0.125,
        img_size=32, epochs=1, batch_size=4, workers=0, precision="fp32", device="cpu",
    )  # fmt: skip
    return result.run_dir / "best.pt", folder / "data" / "val" / "class0" / "0.png"


def timed(command: list[str], stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """(wall-clock seconds, CPU seconds) of `command` in a fresh process, its standard output to `stdout` (an open
    file, or discarded); it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the children so far: this one is the difference
    if result.returncode != 0:
        shown = " ".join(command[:6]) + (" ..." if len(command) > 6 else "")
        raise RuntimeError(f"{shown} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return elapsed, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def measure(rounds: int, checkpoint: Path, image: Path) -> dict:
    """Median seconds of each case and of each reference step, over `rounds` interleaved rounds."""
    vggnet = vggnet_command()
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "vggnet --help": [*vggnet, "--help"],
        "vggnet --version": [*vggnet, "--version"],
        "import torch": [sys.executable, "-c", "import torch"],
        "import vggnet": [sys.executable, "-c", "import vggnet"],
        "vggnet.create_model": [sys.executable, "-c", "import vggnet; vggnet.create_model"],
        "vggnet predict": [*vggnet, "predict", "--model", str(checkpoint), str(image), "--device", "cpu"],
    }
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    steps: dict[str, list[float]] = {}
    load = [os.getloadavg()[0]]
    for _ in range(rounds):
        for name, command in cases.items():
            samples[name].append(timed(command))
        reference = subprocess.run(
            [sys.executable, "-c", _REFERENCE, str(checkpoint), str(image)], capture_output=True, text=True, check=True
        )
        for step, seconds in json.loads(reference.stdout.splitlines()[-1]).items():
            steps.setdefault(step, []).append(seconds)
        load.append(os.getloadavg()[0])
    return {
        "rounds": rounds,
        "cores": os.cpu_count(),
        "load_average": max(load),  # the highest 1-minute load average seen, at the start and after each round
        "cases": {name: statistics.median(wall for wall, _ in values) for name, values in samples.items()},
        "cases_cpu": {name: statistics.median(cpu for _, cpu in values) for name, values in samples.items()},
        "reference_steps": {step: statistics.median(values) for step, values in steps.items()},
    }


def verdicts(measured: dict) -> list[dict]:
    """Each target: the measured time, its limit, their ratio and whether it passes."""
    cases, steps = measured["cases"], measured["reference_steps"]
    limits = {
        "vggnet --help": (HELP_TARGET_S, "0.5 s"),
        "vggnet --version": (HELP_TARGET_S, "0.5 s"),
        "import vggnet": (cases["import torch"] + IMPORT_SLACK_S, "import torch + 0.3 s"),
        "vggnet.create_model": (cases["import torch"] + IMPORT_SLACK_S, "import torch + 0.3 s"),
        # `import torch` as a case of its own (a whole process: the interpreter, the import and the exit, as for
        # `vggnet predict`), plus loading and one inference as timed inside one process.
        "vggnet predict": (
            cases["import torch"] + steps["load_model"] + steps["predict"] + PREDICT_SLACK_S,
            f"import torch + load_model + inference + {PREDICT_SLACK_S} s",
        ),
    }
    return [
        {
            "case": name,
            "seconds": cases[name],
            "limit_seconds": limit,
            "limit": text,
            "ratio": cases[name] / limit,
            "pass": cases[name] <= limit,
        }
        for name, (limit, text) in limits.items()
    ]


def render(measured: dict, results: list[dict]) -> str:
    lines = [f"medians of {measured['rounds']} interleaved rounds, each case in a fresh process"]
    if measured["load_average"] > measured["cores"]:
        lines.append(
            f"warning: the machine is busy (load average up to {measured['load_average']:.1f} on "
            f"{measured['cores']} cores): wall-clock times are inflated; the CPU times are not"
        )
    lines += ["", f"  {'case':<22} {'wall':>9} {'cpu':>9}"]
    lines += [
        f"  {name:<22} {seconds:7.3f} s {measured['cases_cpu'][name]:7.3f} s"
        for name, seconds in measured["cases"].items()
    ]
    steps = measured["reference_steps"]
    lines += ["", "the work `vggnet predict` cannot avoid, timed in one process:"]
    for name, seconds in (
        ("import torch", steps["import torch"]),
        ("vggnet.load_model", steps["load_model"]),
        ("one inference", steps["predict"]),
    ):
        lines.append(f"  {name:<22} {seconds:7.3f} s")
    lines += ["", f"  {'target':<22} {'measured':>9} {'limit':>9} {'ratio':>6}"]
    for result in results:
        verdict = "PASS" if result["pass"] else "FAIL"
        lines.append(
            f"  {result['case']:<22} {result['seconds']:8.3f}s {result['limit_seconds']:8.3f}s "
            f"{result['ratio']:6.2f}  {verdict}  (limit: {result['limit']})"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the median is reported (5)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, image = make_checkpoint(Path(folder))
        measured = measure(args.rounds, checkpoint, image)
    results = verdicts(measured)
    if args.format == "json":
        print(json.dumps({**measured, "targets": results}, indent=2))
    else:
        print(render(measured, results))
    return 0 if all(result["pass"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
