"""Robustness: a corpus of real-world bad and awkward files through every verb, crash safety by fault injection,
untrusted checkpoints, numerical faults, and fuzzing of the decoder and the checkpoint loader.

The long budgets (20 kill trials, hundreds of fuzz examples) run with `pytest -m slow`."""

import csv
import io
import os
import queue
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from conftest import write_image_folder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import vggnet
from vggnet.cli import main
from vggnet.data import UnreadableImageError, load_rgb
from vggnet.models.loading import read_weights_file
from vggnet.training import loop

# ---- the corpus --------------------------------------------------------------------------------------------


def _png_declaring(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def write_bad_files(folder):
    """Files that must be refused with a per-file message. Returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 120, 200)).save(good, format="PNG")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    corrupted = bytearray(good.getvalue())
    corrupted[60:70] = b"\xff" * 10  # inside the compressed data
    files = {
        "empty.jpg": b"",
        "truncated.png": good.getvalue()[:50],
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "corrupted.png": bytes(corrupted),
        "notes.jpg": b"just text, saved with the wrong name",
        "page.jpg": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "bomb.png": _png_declaring(50_000, 50_000),
        "zero.png": _png_declaring(0, 10),
        "drawing.svg.png": b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    }
    paths = []
    for name, content in files.items():
        (folder / name).write_bytes(content)
        paths.append(folder / name)
    return paths


def write_awkward_files(folder):
    """Valid but unusual images, each of which must decode to a sensible RGB image. Returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    ramp16 = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (10, 10, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 8
    frames = [Image.new("RGB", (16, 16), c) for c in [(200, 0, 0), (0, 200, 0)]]
    images = {
        "one_pixel.png": Image.new("RGB", (1, 1), (5, 6, 7)),
        "ribbon.png": Image.fromarray(rng.integers(0, 256, (3, 4000, 3), dtype=np.uint8)),
        "cmyk.jpg": Image.new("CMYK", (32, 32), (0, 200, 200, 0)),
        "deep.png": Image.fromarray(ramp16),
        "float.tiff": Image.fromarray(rng.random((32, 32), dtype=np.float32), mode="F"),
        "alpha.png": rgba,
        "grey_alpha.png": Image.new("LA", (20, 20), (90, 200)),
        "palette.gif": Image.new("P", (20, 20), 3),
        "photo.webp": Image.new("RGB", (40, 30), (120, 130, 140)),
        "bitmap.bmp": Image.new("RGB", (40, 30), (120, 130, 140)),
        "scan.tif": Image.new("RGB", (40, 30), (120, 130, 140)),
        "UPPER.JPG": Image.new("RGB", (40, 30), (120, 130, 140)),
        "café au lait ☕.png": Image.new("RGB", (40, 30), (120, 130, 140)),
    }
    paths = []
    for name, image in images.items():
        image.save(folder / name)
        paths.append(folder / name)
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    Image.new("RGB", (60, 20), (0, 0, 0)).save(folder / "rotated.jpg", exif=exif)
    return [*paths, folder / "animated.gif", folder / "rotated.jpg"]


def test_bad_files_are_refused_with_a_reason(tmp_path):
    for path in write_bad_files(tmp_path):
        with pytest.raises(UnreadableImageError) as error:
            load_rgb(path)
        assert str(path) in str(error.value) and error.value.reason


def test_awkward_files_decode_sensibly(tmp_path):
    paths = {p.name: p for p in write_awkward_files(tmp_path)}
    for path in paths.values():
        image = load_rgb(path)
        assert image.mode == "RGB" and min(image.size) >= 1
    assert load_rgb(paths["one_pixel.png"]).getpixel((0, 0)) == (5, 6, 7)
    assert load_rgb(paths["ribbon.png"]).size == (4000, 3)
    assert load_rgb(paths["alpha.png"]).getpixel((0, 0)) == (255, 255, 255)  # transparent: white
    assert load_rgb(paths["alpha.png"]).getpixel((15, 15)) == (0, 0, 255)
    deep = np.asarray(load_rgb(paths["deep.png"]))[..., 0]
    assert deep.max() > 200 and len(np.unique(deep)) > 100  # scaled, not clipped to white
    assert len(np.unique(np.asarray(load_rgb(paths["float.tiff"])))) > 100
    assert load_rgb(paths["rotated.jpg"]).size == (20, 60)
    assert load_rgb(paths["cmyk.jpg"]).getpixel((5, 5))[0] > 150


def test_huge_jpegs_decode_at_reduced_scale(tmp_path):
    path = tmp_path / "24mp.jpg"
    Image.fromarray(np.zeros((4000, 6000, 3), dtype=np.uint8)).save(path, quality=80)
    assert load_rgb(path, min_size=512).size == (1500, 1000)  # 1/4 scale: 4.5 MB instead of 72 MB
    assert load_rgb(path).size == (6000, 4000)


def test_folder_oddities_are_ignored(tmp_path):
    from vggnet.data import list_images

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "real.png")
    (folder / "looks_like.jpg").mkdir()  # a directory named like an image
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "._real.png").write_bytes(b"\0\5\26\7")
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    os.symlink(folder, folder / "cycle")  # a directory symlink back to itself
    assert [p.name for p in list_images(folder)] == ["real.png"]


def test_every_batch_verb_reports_bad_files_and_goes_on(trained, tmp_path, capsys):
    checkpoint, _ = trained
    bad = write_bad_files(tmp_path / "inputs")
    awkward = write_awkward_files(tmp_path / "inputs")
    missing = tmp_path / "inputs" / "missing.jpg"
    inputs = [str(p) for p in [*bad, *awkward, missing, tmp_path / "inputs" / "looks_like.jpg"]]
    (tmp_path / "inputs" / "looks_like.jpg").mkdir()
    records = vggnet.predict(checkpoint, inputs, precision="fp32")
    assert len(records) == len(inputs)
    failed = {r["path"] for r in records if "error" in r}
    folder_named_like_an_image = inputs[-1]
    assert failed == {str(p) for p in bad} | {str(missing), folder_named_like_an_image}
    assert next(r for r in records if r["path"] == folder_named_like_an_image)["error"] == "a folder with no images"
    assert all(len(r["top"]) == 3 for r in records if "top" in r)
    embedded = vggnet.embed(checkpoint, inputs, precision="fp32")
    assert embedded.features.shape[0] == len(awkward) and len(embedded.errors) == len(bad) + 2
    assert np.isfinite(embedded.features).all()
    assert main(["predict", "--model", str(checkpoint), *inputs, "--format", "json"]) == 1
    capsys.readouterr()
    for path in bad[:3]:
        assert main(["explain", "--model", str(checkpoint), str(path), "--out", str(tmp_path / "cam.png")]) == 2
        assert str(path) in capsys.readouterr().err


def test_eval_and_train_skip_bad_files_and_strict_refuses(trained, tmp_path, caplog):
    checkpoint, _ = trained
    folder = write_image_folder(tmp_path / "mixed")
    bad = write_bad_files(tmp_path / "mixed" / "val" / "ant")
    awkward = write_awkward_files(tmp_path / "mixed" / "train" / "bee")  # valid: trained on like any other
    report = vggnet.evaluate(checkpoint, folder, precision="fp32")
    assert report["num_images"] == 12  # the bad files are skipped, each with a warning
    assert "skipped unreadable image" in caplog.text
    with pytest.raises(ValueError, match=f"{len(bad)} unreadable image"):
        vggnet.train(data=str(folder), out=str(tmp_path / "runs"), strict=True, epochs=1, model="vgg11_bn",
                     head="compact", width_mult=0.125, img_size=32, workers=0)  # fmt: skip
    result = vggnet.train(data=str(folder), out=str(tmp_path / "runs"), epochs=1, model="vgg11_bn",
                          head="compact", width_mult=0.125, img_size=32, workers=0, batch_size=8)  # fmt: skip
    assert result.metrics["epoch"] == 1
    assert "train" in caplog.text and not any(str(path) in caplog.text for path in awkward)


# ---- crash safety ------------------------------------------------------------------------------------------

EPOCHS = 6
TRAIN_ARGS = ["--model", "vgg11_bn", "--head", "compact", "--width-mult", "0.125", "--img-size", "32",
              "--batch-size", "4", "--workers", "0", "--precision", "fp32", "--epochs", str(EPOCHS)]  # fmt: skip
# Only a guard against a hung process: far longer than any state takes to come on a busy machine.
HANG_GUARD_S = 300


class _Training:
    """`vggnet train` in a subprocess whose output is read line by line as it comes, so that a test acts on a
    state of the run rather than after a guessed time. The line `epoch N/...` is printed after epoch N's
    checkpoints and metrics.csv are written. Used as a context manager: the process is ended on the way out."""

    def __init__(self, data, out) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vggnet", "train", "--data", str(data), "--out", str(out), *TRAIN_ARGS],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each line when printed, not when a pipe buffer fills
        )  # fmt: skip
        self.output: list[str] = []
        self._lines: queue.Queue = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put((time.monotonic(), line))
        self._lines.put((time.monotonic(), None))  # the end of the output

    def _next_line(self, waiting_for: str) -> tuple[float, str | None]:
        try:
            arrived, line = self._lines.get(timeout=HANG_GUARD_S)
        except queue.Empty:
            pytest.fail(f"no output for {HANG_GUARD_S} s while waiting for {waiting_for} (hung?):\n{self.tail()}")
        if line is not None:
            self.output.append(line)
        return arrived, line

    def wait_for_line(self, prefix: str) -> float:
        """Wait for a line that starts with `prefix`; returns when it was printed (`time.monotonic()`)."""
        while True:
            arrived, line = self._next_line(f"a line starting with {prefix!r}")
            if line is None:
                pytest.fail(f"training exited ({self.process.wait()}) before printing {prefix!r}:\n{self.tail()}")
            if line.startswith(prefix):
                return arrived

    def finish(self) -> int:
        """Read the rest of the output and return the exit code."""
        while self._next_line("the end of the output")[1] is not None:
            pass
        return self.process.wait()

    def tail(self) -> str:
        return "".join(self.output)[-3000:]

    def __enter__(self) -> "_Training":
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join()
        self.process.stdout.close()


def _read_metrics(run) -> list[dict]:
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:  # a torn row has missing fields (None values) or extra ones (under the key None)
        assert None not in row and None not in row.values() and all(row.values()), f"torn metrics.csv row {row}"
    return rows


def _same_rows(rows: list[dict], history: list[dict]) -> bool:
    """Whether metrics.csv's rows are the epochs in `history` (last.pt's record), as written to 6 digits."""
    return len(rows) == len(history) and all(
        float(row[key]) == pytest.approx(value, rel=1e-5)
        for row, epoch in zip(rows, history, strict=True)
        for key, value in epoch.items()
    )


def _kill_and_resume(data, out, rng: random.Random) -> int:
    """Train in a subprocess, SIGKILL it at a random moment after its second epoch's checkpoint, check what it
    left and resume it to the end. Returns the epoch that last.pt held at the kill."""
    # After the line of a random epoch k (2 <= k <= EPOCHS - 2: that epoch's checkpoint exists), within as long as
    # epoch k took (whatever the machine's load), so that kills land in training steps, in validation and in each
    # file's write. The two epochs left after k keep the run alive unless the machine suddenly doubles its speed;
    # then the run ends before the kill, which proves nothing, and the trial is made again (at most three times).
    for _attempt in range(3):
        with _Training(data, out) as training:
            last = rng.randint(2, EPOCHS - 2)
            printed = [training.wait_for_line(f"epoch {epoch}/") for epoch in range(1, last + 1)]
            time.sleep(rng.uniform(0.0, printed[-1] - printed[-2]))
            training.process.kill()
            code = training.finish()
        if code == -signal.SIGKILL:
            break
        assert code == 0, f"the run failed ({code}) before it was killed:\n{training.tail()}"
        shutil.rmtree(out)
    assert code == -signal.SIGKILL, f"three runs ended before they were killed:\n{training.tail()}"
    run = out / "exp"
    assert torch.load(run / "best.pt", weights_only=True)["format"] == "vggnet-checkpoint"
    saved = torch.load(run / "last.pt", weights_only=True)["progress"]
    assert saved["epoch"] >= 2 and saved["partial"]["step"] == 0
    # metrics.csv is written after last.pt: whole, and as long as last.pt's record or one epoch behind it.
    before = _read_metrics(run)
    assert _same_rows(before, saved["history"]) or _same_rows(before, saved["history"][:-1]), before

    result = vggnet.train(resume=run / "last.pt")
    rows = _read_metrics(run)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    # The epochs finished before the kill are kept as they were (timings included): continued, not redone.
    assert _same_rows(rows[: saved["epoch"]], saved["history"]), rows
    assert result.metrics["epoch"] == EPOCHS
    assert torch.load(run / "last.pt", weights_only=True)["epoch"] == EPOCHS
    assert torch.load(run / "best.pt", weights_only=True)["format"] == "vggnet-checkpoint"
    assert not list(run.glob(".*.tmp"))
    return saved["epoch"]


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=8)
    rng = random.Random(0)
    for trial in range(2):
        _kill_and_resume(data, tmp_path / f"runs{trial}", rng)


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_twenty_times(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=8)
    rng = random.Random(1)
    saved_epochs = [_kill_and_resume(data, tmp_path / f"runs{trial}", rng) for trial in range(20)]
    assert len(set(saved_epochs)) >= 2, saved_epochs  # the kills landed in more than one epoch


def test_sigterm_saves_last_pt_and_says_how_to_resume(tmp_path):
    data = write_image_folder(tmp_path / "data", per_class=40)
    run = tmp_path / "runs" / "exp"
    with _Training(data, tmp_path / "runs") as training:
        training.wait_for_line("epoch 1/")  # the stop handler is in place, and five epochs are left to stop
        training.process.send_signal(signal.SIGTERM)
        code = training.finish()
    assert code == 130, training.tail()
    assert f"Resume with: vggnet train --resume {run / 'last.pt'}" in training.tail()
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["format"] == "vggnet-checkpoint" and 1 <= last["progress"]["epoch"] < EPOCHS


# ---- numerical faults --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("poisoned_epoch", "saved"),
    [(2, "last.pt still holds the last good epoch"), (1, "no epoch had finished, so nothing was saved")],
)
def test_a_non_finite_loss_stops_with_advice_and_keeps_the_last_good_epoch(
    trained, tmp_path, monkeypatch, poisoned_epoch, saved
):
    _, data = trained
    original = loop._Run._train_one_epoch

    def poison(self, stop):
        if self.epoch == poisoned_epoch - 1:
            monkeypatch.setattr(self, "criterion", lambda logits, labels: logits.sum() * float("nan"))
        return original(self, stop)

    monkeypatch.setattr(loop._Run, "_train_one_epoch", poison)
    expected = rf"loss became nan at epoch {poisoned_epoch}, step 1; lower --lr .* --precision fp32. {saved}$"
    with pytest.raises(RuntimeError, match=expected):
        vggnet.train(data=str(data), out=str(tmp_path / "runs"), epochs=3, model="vgg11_bn", head="compact",
                     width_mult=0.125, img_size=32, workers=0, batch_size=8)  # fmt: skip
    last = tmp_path / "runs" / "exp" / "last.pt"
    assert last.exists() == (poisoned_epoch > 1)
    if last.exists():
        assert torch.load(last, weights_only=True)["epoch"] == 1


def test_running_out_of_memory_suggests_a_smaller_batch(trained, tmp_path, monkeypatch):
    _, data = trained

    class OutOfMemory(torch.nn.Module):
        def forward(self, images):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "wrap_for_training", lambda model, *args: OutOfMemory())
    with pytest.raises(RuntimeError, match=r"out of memory at --batch-size 8; lower it \(e.g. --batch-size 4\)"):
        vggnet.train(data=str(data), out=str(tmp_path / "runs"), epochs=1, model="vgg11_bn", head="compact",
                     width_mult=0.125, img_size=32, workers=0, batch_size=8)  # fmt: skip


def test_fp16_on_the_cpu_falls_back_with_a_notice(caplog):
    from vggnet.runtime import resolve_precision

    assert resolve_precision("fp16", torch.device("cpu")) in ("bf16", "fp32")
    assert "fp16 needs a CUDA device; using" in caplog.text


# ---- fuzzing -----------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
FUZZ_LONG = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _valid_image_bytes(format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(buffer, format=format)
    return buffer.getvalue()


SEEDS = {"PNG": _valid_image_bytes("PNG"), "JPEG": _valid_image_bytes("JPEG"), "GIF": _valid_image_bytes("GIF")}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    mutated = bytearray(data)
    for position, value in edits:
        mutated[position % len(mutated)] = value
    return bytes(mutated[: max(1, len(mutated) - cut)])


image_bytes = st.one_of(
    st.binary(max_size=2048),
    st.builds(
        _mutate,
        st.sampled_from(list(SEEDS.values())),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
        st.integers(0, 400),
    ),
)


def _decode_only_fails_cleanly(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.img"
    path.write_bytes(data)
    try:
        image = load_rgb(path, min_size=32)
    except UnreadableImageError:
        return
    assert image.mode == "RGB" and image.width >= 1 and image.height >= 1


@FUZZ
@given(data=image_bytes)
def test_fuzz_the_decoder(tmp_path, data):
    _decode_only_fails_cleanly(tmp_path, data)


@pytest.mark.slow
@FUZZ_LONG
@given(data=image_bytes)
def test_fuzz_the_decoder_long(tmp_path, data):
    _decode_only_fails_cleanly(tmp_path, data)


def _checkpoint_bytes() -> bytes:
    buffer = io.BytesIO()
    torch.save(vggnet.create_model("vgg11", head="compact", width_mult=0.0625, num_classes=2).state_dict(), buffer)
    return buffer.getvalue()


CHECKPOINT = _checkpoint_bytes()
checkpoint_bytes = st.one_of(
    st.binary(max_size=4096),
    st.builds(
        _mutate,
        st.just(CHECKPOINT),
        st.lists(st.tuples(st.integers(0, len(CHECKPOINT)), st.integers(0, 255)), min_size=1, max_size=16),
        st.integers(0, len(CHECKPOINT) // 2),
    ),
)


def _load_only_fails_cleanly(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.pt"
    path.write_bytes(data)
    model = vggnet.create_model("vgg11", head="compact", width_mult=0.0625, num_classes=2)
    try:
        vggnet.load_weights(model, path)
    except ValueError:
        return


@FUZZ
@given(data=checkpoint_bytes)
def test_fuzz_the_checkpoint_loader(tmp_path, data):
    _load_only_fails_cleanly(tmp_path, data)


@pytest.mark.slow
@FUZZ_LONG
@given(data=checkpoint_bytes)
def test_fuzz_the_checkpoint_loader_long(tmp_path, data):
    _load_only_fails_cleanly(tmp_path, data)


def test_read_weights_file_names_the_bad_file(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(CHECKPOINT[:100])
    with pytest.raises(ValueError, match="weights.pt is not a readable PyTorch checkpoint"):
        read_weights_file(path)
