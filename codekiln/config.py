"""Loading any stage's config dataclass from a TOML file and `--set key=value` overrides.

A config file may hold one table per stage (`[curate]`, `[tokenizer]`, `[pack]`, ...); a file
without stage tables is read as the settings of the stage that loads it.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

from codekiln.errors import UserError

T = TypeVar("T")
STAGES = ("curate", "tokenizer", "pack", "train", "eval", "serve", "attribution")


def read_toml(path: str | Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None


def load_config(
    cls: type[T],
    section: str,
    path: str | Path | None = None,
    sets: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> T:
    """`cls` with defaults, then the file's `[section]` table, then each `key=value`, then
    `extra` (a command's own flags, already typed).

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     size: int = 1
    ...     names: list | None = None
    >>> load_config(Demo, "demo", sets=["size=3", "names=a,b"])
    Demo(size=3, names=['a', 'b'])
    """
    merged = _merged(cls, section, path, sets)
    merged.update(extra or {})
    try:
        return cls(**merged)
    except TypeError as exc:
        raise UserError(f"{section} config: {exc}") from None


def given_settings(
    cls: type, section: str, path: str | Path | None = None, sets: list[str] | None = None
) -> dict[str, Any]:
    """Only the settings the file's `[section]` table and the `key=value` items give (top
    level keys), with their values: what a resumed run is asked to change.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Demo:
    ...     size: int = 1
    ...     name: str = "a"
    >>> given_settings(Demo, "demo", sets=["size=3"])
    {'size': 3}
    """
    merged = _merged(cls, section, path, sets)
    keys = set(_file_values(section, path)) | {
        item.partition("=")[0].strip().split(".")[0] for item in sets or []
    }
    return {key: merged[key] for key in sorted(keys)}


def _file_values(section: str, path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    values = read_toml(path)
    if any(key in values for key in STAGES):
        values = values.get(section, {})
    return values


def _merged(cls: type, section: str, path: str | Path | None, sets: list[str] | None) -> dict:
    """The defaults of `cls`, then the file's table, then the `key=value` items (unvalidated)."""
    values = _file_values(section, path)
    base = dataclasses.asdict(cls())
    for key in values:
        if key not in base:
            raise UserError(f"config file {path}: unknown {section} setting '{key}'")
    merged = dict(base)
    for key, value in values.items():
        if isinstance(base[key], dict) and isinstance(value, dict):
            # A file's tables add to the defaults entry by entry (e.g. per-language overrides).
            merged[key] = {**base[key]}
            for name, table in value.items():
                old = merged[key].get(name, {})
                merged[key][name] = {**old, **table} if isinstance(table, dict) else table
        else:
            merged[key] = value
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set expects key=value, got '{item}'")
        _assign(merged, key.strip(), parse_value(raw.strip()), base, section, cls)
    return merged


def split_sets(sets: list[str] | None, default: str) -> dict[str, list[str]]:
    """Group `stage.key=value` items by stage; items without a stage prefix go to `default`.

    >>> split_sets(["tokenizer.vocab_size=512", "max_lines=9"], "curate")
    {'tokenizer': ['vocab_size=512'], 'curate': ['max_lines=9']}
    """
    groups: dict[str, list[str]] = {}
    for item in sets or []:
        head, dot, rest = item.partition(".")
        if dot and head in STAGES:
            groups.setdefault(head, []).append(rest)
        else:
            groups.setdefault(default, []).append(item)
    return groups


def parse_value(raw: str) -> Any:
    """'1000' -> 1000, 'none' -> None, 'Python,Go' -> ['Python', 'Go'], '[1, 2]' -> [1, 2]."""
    low = raw.lower()
    if low in ("none", "null"):
        return None
    if low in ("true", "false"):
        return low == "true"
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if "," in raw:
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _is_list_field(cls: type, name: str) -> bool:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return "list" in str(f.type)
    return False


def _assign(
    target: dict[str, Any], key: str, value: Any, base: dict[str, Any], section: str, cls: type
) -> None:
    parts = key.split(".")
    if parts[0] not in base:
        raise UserError(f"--set: unknown {section} setting '{parts[0]}'")
    if len(parts) == 1 and isinstance(value, str) and _is_list_field(cls, parts[0]):
        # A single name for a list setting: `languages=Python` means ["Python"].
        if not (isinstance(base[parts[0]], str) and value in (base[parts[0]], "any")):
            value = [value]
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise UserError(f"--set: '{key}' does not name a table entry")
    node[parts[-1]] = value
