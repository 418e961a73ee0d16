"""Self-describing checkpoints, written atomically, and the random-number state that makes resuming exact.

A checkpoint is a dict of tensors and plain Python values (loadable with `torch.load(weights_only=True)`):
`format`, `version`, `model` ({"name", "kwargs"}), `state_dict`, `classes`, `preprocess`, `config`, `epoch`,
`metrics`; `last.pt` adds `optimizer`, `scheduler`, `scaler`, `rng` and `progress` (the loop's own state), and
under torchrun `rng_by_rank` (every process's random state).
"""

import random
from pathlib import Path

import numpy as np
import torch

from ..models.loading import CHECKPOINT_FORMAT, safe_torch_load
from ..models.vgg import VGG

CHECKPOINT_VERSION = 1
# Settings that may be given again when resuming: `epochs` extends (or shortens) the run and its schedule;
# `data` and `image_root` say where the run's data is now (moved, or another machine's copy: the classes must be the
# same); the others do not change the results.
RESUME_OVERRIDABLE = ("epochs", "workers", "device", "data", "image_root")
_RESUME_KEYS = ("optimizer", "scheduler", "scaler", "rng", "progress", "config")


def model_checkpoint(
    model: VGG, classes: list[str], preprocess: dict, config: dict, epoch: int, metrics: dict, runtime: dict
) -> dict:
    """The part of a checkpoint that every later verb needs: the model, its classes and preprocessing; `runtime`
    says where and at what precision it was trained."""
    return {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "model": {"name": model.model_name, "kwargs": model.model_kwargs},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(classes),
        "preprocess": dict(preprocess),
        "config": dict(config),
        "epoch": epoch,
        "metrics": dict(metrics),
        "runtime": dict(runtime),
    }


def last_checkpoint(content: dict, optimizer, scheduler, scaler, rng_states: list[dict], progress: dict) -> dict:
    """`last.pt`: the model checkpoint `content` with the training state, the loop's `progress`, and the random
    state of every process (`rng`: the main one's; `rng_by_rank`: all of them, under torchrun), so that a resume in
    as many processes continues exactly."""
    content = dict(content)
    content.update(
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        scaler=scaler.state_dict(),
        rng=rng_states[0],
        progress=progress,
    )
    if len(rng_states) > 1:
        content["rng_by_rank"] = rng_states
    return content


def restore_training_state(checkpoint: dict, model: VGG, optimizer, scaler, rank: int, world_size: int) -> None:
    """Load a `last.pt`'s model, optimizer and gradient-scaler state, and the random state of process `rank` (its
    own when the run had `world_size` processes too, else the main process's).

    The schedule is not loaded: it depends on the step alone, and the loop builds it at the run's step
    (`setup.build_scheduler`), counted in this run's steps per epoch."""
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scaler.load_state_dict(checkpoint["scaler"])
    by_rank = checkpoint.get("rng_by_rank", [checkpoint["rng"]])
    restore_rng(by_rank[rank] if len(by_rank) == world_size else checkpoint["rng"])


def remove_stale_temporaries(folder: Path) -> None:
    """Delete the temporary files that atomic writes left behind when their process was killed mid-write."""
    for leftover in folder.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)


def load_resume_checkpoint(path: str | Path, settings: dict, config_file: str | Path | None = None) -> dict:
    """Read a `last.pt` for `--resume`, checking that it is a vggnet checkpoint with the training state, and that
    the `settings` given with it are ones a resumed run takes (RESUME_OVERRIDABLE; no config file)."""
    path = Path(path).expanduser()
    content = safe_torch_load(path)
    if not isinstance(content, dict) or content.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"--resume {path} is not a vggnet checkpoint; pass a run's last.pt")
    missing = [key for key in _RESUME_KEYS if key not in content]
    if missing:
        raise ValueError(
            f"--resume {path} has no training state ({', '.join(missing)} missing): best.pt holds only the model; "
            f"resume from last.pt in the same folder, or fine-tune with --pretrained {path}"
        )
    if content.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"--resume {path} was written by a newer vggnet (version {content['version']}); upgrade")
    _check_resume_types(content, path)
    extra = sorted(set(settings) - set(RESUME_OVERRIDABLE)) + (["config"] if config_file else [])
    if extra:
        flags = ", ".join("--" + name.replace("_", "-") for name in extra)
        raise ValueError(
            f"--resume continues a run with its saved settings; drop {flags} (or start a new run with them)"
        )
    return content


# What each entry of a last.pt must be, checked before any of it is used.
_RESUME_TYPES = {
    "state_dict": dict,
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "rng": dict,
    "progress": dict,
    "config": dict,
    "classes": list,
}
_PROGRESS_TYPES = {"epoch": int, "partial": dict, "history": list, "bad_epochs": int}


def _check_resume_types(content: dict, path: Path) -> None:
    for key, kind in _RESUME_TYPES.items():
        if not isinstance(content.get(key), kind):
            raise ValueError(
                f"--resume {path}: entry {key!r} must be a {kind.__name__}, got {type(content.get(key)).__name__}"
            )
    bad = [key for key, value in content["state_dict"].items() if not isinstance(value, torch.Tensor)]
    if bad:
        raise ValueError(f"--resume {path}: state_dict entry {bad[0]!r} is not a tensor")
    for key, kind in _PROGRESS_TYPES.items():
        if not isinstance(content["progress"].get(key), kind):
            raise ValueError(f"--resume {path}: entry 'progress.{key}' must be a {kind.__name__}")
    if not isinstance(content["rng"].get("torch"), torch.Tensor):
        raise ValueError(f"--resume {path}: entry 'rng.torch' must be a tensor")
    by_rank = content.get("rng_by_rank", [])
    if not isinstance(by_rank, list) or not all(
        isinstance(state, dict) and isinstance(state.get("torch"), torch.Tensor) for state in by_rank
    ):
        raise ValueError(f"--resume {path}: entry 'rng_by_rank' must be a list of random states, one per process")


def capture_rng() -> dict:
    """The state of every random-number generator the loop uses (Python, NumPy, torch CPU and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state_to_plain(np.random.get_state()),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    random.setstate(_as_tuples(state["python"]))
    np.random.set_state(_numpy_state_from_plain(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_state_to_plain(state: tuple) -> dict:
    name, keys, position, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(position),
            "has_gauss": int(has_gauss), "cached": float(cached)}  # fmt: skip


def _numpy_state_from_plain(state: dict) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, state["pos"], state["has_gauss"], state["cached"]


def _as_tuples(value):
    """`random.setstate` needs tuples; a round trip through some serialisers gives lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value
