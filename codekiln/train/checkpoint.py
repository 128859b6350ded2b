"""Checkpoints: written so that a killed write never leaves a half checkpoint behind, and
checked file by file before a run resumes from one.

    DIR/checkpoints/step_N/   model.pt, optimizer.pt, rng.pt, state.json (written last)
    DIR/checkpoints/latest    the name of the newest checkpoint

A checkpoint is written to step_N.tmp/, each file fsynced, state.json (with every file's size
and SHA-256) last, then renamed to step_N/, then `latest` is replaced. Resuming takes the
newest step_N/ (a leftover .tmp is a write that never finished and is removed) and checks
every file against state.json; a damaged one is a UserError.

Only rank 0 writes checkpoints, but every rank reads one when resuming, so under torchrun the
output folder must be on a file system all ranks see.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codekiln.errors import UserError
from codekiln.manifest import file_sha256, write_atomic, write_json

CHECKPOINT_VERSION = 1
CHECKPOINT_FILES = ("model.pt", "optimizer.pt", "rng.pt")
_STEP_DIR = re.compile(r"step_(\d+)")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def checkpoint_dirs(root: Path) -> list[Path]:
    """Finished checkpoints (step_N/, not step_N.tmp/), oldest first."""
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := _step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def write_checkpoint(
    root: Path, step: int, payloads: dict[str, Any], state: dict[str, Any], keep: int
) -> Path:
    """step_N.tmp/ with `payloads` (torch.save) and state.json last, fsynced, renamed to
    step_N/; then `latest` is replaced and all but the newest `keep` checkpoints removed."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step}"
    tmp = root / f"step_{step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    files = {}
    for name, payload in payloads.items():
        path = tmp / name
        with open(path, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        files[name] = {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
    write_json(tmp / "state.json", {**state, "files": files})
    _fsync_dir(tmp)
    if final.exists():  # the same step again (a resumed run that stopped where it began)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    write_atomic(root / "latest", final.name + "\n")
    for old in checkpoint_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest finished checkpoint. `latest` names it too, but a run killed between the
    rename and that pointer leaves a newer, complete step_N/: the directories decide."""
    found = checkpoint_dirs(root)
    return found[-1] if found else None


def remove_unfinished(root: Path) -> None:
    """Delete the step_N.tmp/ folders of writes that never finished."""
    for leftover in root.glob("step_*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)


def read_checkpoint_state(path: Path) -> dict[str, Any]:
    """state.json of a checkpoint, with every file present at its recorded size."""
    try:
        state = json.loads((path / "state.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"state.json is unreadable ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise _corrupt(path, "state.json is not a codekiln checkpoint state")
    for name in CHECKPOINT_FILES:
        entry = state.get("files", {}).get(name)
        file = path / name
        if entry is None or not file.is_file() or file.stat().st_size != entry["bytes"]:
            raise _corrupt(path, f"{name} is missing or truncated")
    return state


def load_checkpoint_file(path: Path, name: str, state: dict[str, Any]) -> Any:
    """One of the checkpoint's files, loaded on the CPU once its SHA-256 matches state.json."""
    file = path / name
    if file_sha256(file) != state["files"][name]["sha256"]:
        raise _corrupt(path, f"{name} does not match its recorded sha256")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip or unpickling errors of many types
        raise _corrupt(path, f"{name} cannot be read ({type(exc).__name__})") from None


def _corrupt(path: Path, why: str) -> UserError:
    older = [p.name for p in checkpoint_dirs(path.parent) if p != path]
    fallback = f"delete it to resume from {older[-1]}" if older else "delete it and start over"
    return UserError(f"checkpoint {path} is damaged ({why}): {fallback}")


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, NumPy and Python generator states, as tensors and plain
    values that `torch.load(weights_only=True)` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
