"""Checkpoints: sharded, written by every rank at once, so that a killed write never leaves a
half checkpoint behind, and checked file by file before a run resumes from one.

    DIR/checkpoints/step_N/   .metadata, __R_0.distcp (one or more per rank R: its shards of
                              the model and optimizer, torch.distributed.checkpoint's format),
                              rng.pt (every rank's generator states), state.json (last)
    DIR/checkpoints/latest    the name of the newest checkpoint

Every rank writes its own shards into step_N.tmp/ with `torch.distributed.checkpoint.save`
(DCP; files fsynced), nothing gathered; after a barrier the ranks hash the files between them
and rank 0 writes state.json (step, data position, config, every file's size and SHA-256)
last, fsyncs, renames the folder to step_N/ and replaces `latest`. Resuming takes the newest
step_N/ (a leftover .tmp is a write that never finished and is removed), checks every file
against state.json (the ranks share the hashing) and lets DCP read each rank's shards of the
layout it runs in now, whatever layout wrote them: the keys are the model's own names.

Every rank writes and reads, so under torchrun the output folder must be on a file system all
ranks see. A checkpoint of the older format (version 1: whole state dicts in model.pt) is
refused with one line; finish such a run with the codekiln that started it.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from codekiln.errors import UserError
from codekiln.manifest import atomic_path, file_sha256, tmp_path, write_atomic, write_json

CHECKPOINT_VERSION = 2
RNG_FILE = "rng.pt"
_STEP_DIR = re.compile(r"step_(\d+)")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _grouped() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank_and_size() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if _grouped() else (0, 1)


def _barrier() -> None:
    if _grouped():
        dist.barrier()


def _gather(value) -> list:
    if not _grouped():
        return [value]
    values = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


@contextmanager
def _quiet_single_process():
    """DCP warns that it assumes one process when there is no process group: it is meant."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed is disabled", UserWarning)
        yield


def _step_of(path: Path) -> int | None:
    match = _STEP_DIR.fullmatch(path.name)
    return int(match.group(1)) if match and path.is_dir() else None


def checkpoint_dirs(root: Path) -> list[Path]:
    """Finished checkpoints (step_N/, not step_N.tmp/), oldest first."""
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := _step_of(p)) is not None]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    root: Path,
    step: int,
    shards: dict[str, Any],
    payloads: dict[str, Any],
    state: dict[str, Any] | None,
    keep: int,
) -> Path:
    """Every rank: write `shards` (this rank's, as state_dicts.sharded_state makes them) with
    DCP into step_N.tmp/, rank 0 `payloads` (torch.save) beside them; then state.json (rank
    0's `state` with every file's size and SHA-256) last, the rename to step_N/, `latest`,
    and all but the newest `keep` checkpoints removed. A collective under torchrun."""
    import torch.distributed.checkpoint as dcp

    rank, _ = _rank_and_size()
    final = root / f"step_{step}"
    if rank == 0:
        root.mkdir(parents=True, exist_ok=True)
    # Rank 0 owns the rename (at the end of the block; a step_N/ already there, the same
    # step again after a resumed run that stopped where it began, is replaced); the other
    # ranks only write their shards into step_N.tmp/.
    with atomic_path(final) if rank == 0 else nullcontext(tmp_path(final)) as tmp:
        if rank == 0:
            tmp.mkdir()
        _barrier()
        writer = dcp.FileSystemWriter(tmp, sync_files=True)
        with _quiet_single_process():
            dcp.save(shards, storage_writer=writer, no_dist=not _grouped())
        if rank == 0:
            for name, payload in payloads.items():
                with open(tmp / name, "wb") as handle:
                    torch.save(payload, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
        _barrier()
        names = _gather(sorted(p.name for p in tmp.iterdir()) if rank == 0 else None)[0]
        files = _digests(tmp, names)
        if rank == 0:
            write_json(tmp / "state.json", {**state, "files": files})
            _fsync_dir(tmp)
    if rank == 0:
        _fsync_dir(root)
        write_atomic(root / "latest", final.name + "\n")
        for old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def _digests(folder: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    """{name: {bytes, sha256}} of `folder`'s files; each rank hashes every world-th file
    (a collective), so hashing a large checkpoint is spread as its writing was."""
    rank, size = _rank_and_size()
    mine = {
        name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
        for name in names[rank::size]
    }
    merged: dict[str, dict[str, Any]] = {}
    for part in _gather(mine):
        merged.update(part)
    return {name: merged[name] for name in names}


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
    if isinstance(state, dict) and state.get("version") == 1:
        raise UserError(
            f"checkpoint {path} is in codekiln's old format (version 1, whole state dicts), "
            f"which this version does not read (it writes version {CHECKPOINT_VERSION}, "
            "sharded): finish that run with the codekiln that started it, or start over"
        )
    if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
        raise _corrupt(path, "state.json is not a codekiln checkpoint state")
    files = state.get("files")
    if not isinstance(files, dict) or ".metadata" not in files or RNG_FILE not in files:
        raise _corrupt(path, "state.json does not list the checkpoint's files")
    for name, entry in files.items():
        file = path / name
        if not file.is_file() or file.stat().st_size != entry["bytes"]:
            raise _corrupt(path, f"{name} is missing or truncated")
    return state


def verify_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """A UserError unless every file matches its SHA-256 in state.json; each rank hashes
    every world-th file (a collective: every rank gets the same answer)."""
    names = sorted(state["files"])
    found = _digests(path, names)
    for name in names:
        if found[name]["sha256"] != state["files"][name]["sha256"]:
            raise _corrupt(path, f"{name} does not match its recorded sha256")


def shard_reader(path: Path) -> Callable[[dict[str, Any]], None]:
    """`read(target)`: DCP's load of the checkpoint at `path` into `target` in place (this
    rank's shards of the current layout, read from whichever files hold them)."""
    import torch.distributed.checkpoint as dcp

    def read(target: dict[str, Any]) -> None:
        try:
            with _quiet_single_process():
                reader = dcp.FileSystemReader(path)
                dcp.load(target, storage_reader=reader, no_dist=not _grouped())
        except dcp.CheckpointException as exc:
            raise _corrupt(path, f"its shards cannot be read ({_first_line(exc)})") from None

    return read


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip()[:200] if lines else type(exc).__name__


def checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """{parameter name: global shape} of the model a checkpoint holds, from DCP's metadata
    alone (nothing is loaded): what a run or an export checks before it allocates."""
    import torch.distributed.checkpoint as dcp

    try:
        metadata = dcp.FileSystemReader(path).read_metadata()
    except Exception as exc:  # unpickling errors of many types
        raise _corrupt(path, f".metadata cannot be read ({type(exc).__name__})") from None
    return {
        key.removeprefix("model."): tuple(entry.size)
        for key, entry in metadata.state_dict_metadata.items()
        if key.startswith("model.") and hasattr(entry, "size")
    }


def load_checkpoint_weights(
    path: Path, into: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """The model's weights in a checkpoint of any layout, whole, on the CPU, in this one
    process (no process group needed): into the tensors of `into` (a model's state dict,
    loaded in place), or into new ones of the recorded shapes and types."""
    import torch.distributed.checkpoint as dcp

    if into is None:
        metadata = dcp.FileSystemReader(path).read_metadata()
        into = {
            key.removeprefix("model."): torch.empty(entry.size, dtype=entry.properties.dtype)
            for key, entry in metadata.state_dict_metadata.items()
            if key.startswith("model.") and hasattr(entry, "size")
        }
    try:
        with _quiet_single_process():
            dcp.load({"model": into}, storage_reader=dcp.FileSystemReader(path), no_dist=True)
    except dcp.CheckpointException as exc:
        raise _corrupt(path, f"its shards cannot be read ({_first_line(exc)})") from None
    return into


def load_rng_states(path: Path) -> list[dict[str, Any]]:
    """Every rank's generator states, as the run that wrote the checkpoint had them."""
    try:
        return torch.load(path / RNG_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip or unpickling errors of many types
        raise _corrupt(path, f"{RNG_FILE} cannot be read ({type(exc).__name__})") from None


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
