"""Loading any stage's config dataclass from a TOML file and `--set key=value` overrides.

A config file may hold one table per stage (`[curate]`, `[tokenizer]`, `[pack]`, ...); a file
without stage tables is read as the settings of the stage that loads it. A setting whose
default is a dataclass is a table of its own (`[curate.minhash]`, `--set minhash.threshold=0.8`),
built into that dataclass, to any depth.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tomllib
import typing
from pathlib import Path
from types import UnionType
from typing import Any, TypeVar, Union

from codekiln.errors import UserError

T = TypeVar("T")
STAGES = ("curate", "tokenizer", "pack", "train", "eval", "serve", "lsp", "attribution")


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
    `extra` (a command's own flags, already typed). A field whose default is a dataclass is
    a table of its own: `[section.field]` in the file, `field.key=value` with `--set`.

    >>> from dataclasses import dataclass, field
    >>> @dataclass
    ... class Part:
    ...     depth: int = 2
    >>> @dataclass
    ... class Demo:
    ...     size: int = 1
    ...     names: list | None = None
    ...     part: Part = field(default_factory=Part)
    >>> load_config(Demo, "demo", sets=["size=3", "names=a,b", "part.depth=4"])
    Demo(size=3, names=['a', 'b'], part=Part(depth=4))
    """
    merged = _merged(cls, section, path, sets)
    for key, value in (extra or {}).items():
        if key in _tables(cls) and isinstance(value, dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    try:
        return _build(cls, merged)
    except TypeError as exc:
        raise UserError(f"{section} config: {exc}") from None


def _tables(cls: type) -> dict[str, type]:
    """The fields of `cls` whose default is a dataclass (a table of settings), by name."""
    defaults = cls()
    return {
        f.name: type(getattr(defaults, f.name))
        for f in dataclasses.fields(cls)
        if dataclasses.is_dataclass(getattr(defaults, f.name))
    }


def _build(cls: type[T], values: dict[str, Any]) -> T:
    """`cls(**values)`, with each table's dict built into its own dataclass first."""
    tables = _tables(cls)
    try:
        hints = typing.get_type_hints(cls)
    except NameError:  # an annotation only imported for type checkers: nothing to check by
        hints = {}
    for key, value in values.items():
        if key not in tables and key in hints:
            _check_scalar(key, value, hints[key])
    return cls(
        **{
            key: _build(tables[key], value) if key in tables and isinstance(value, dict) else value
            for key, value in values.items()
        }
    )


_SCALARS = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _check_scalar(key: str, value: Any, hint: Any) -> None:
    """A UserError when a setting typed as plain scalars (`int`, `float | None`, ...) gets a
    value of another type; other settings (lists, tables, unions with them) are left to the
    config's own checks.

    >>> _check_scalar("port", "x", int)
    Traceback (most recent call last):
    ...
    codekiln.errors.UserError: setting 'port' must be an integer, got 'x'
    """
    allowed = typing.get_args(hint) if typing.get_origin(hint) in (Union, UnionType) else (hint,)
    kinds = [a for a in allowed if a is not type(None)]
    if not kinds or any(a not in _SCALARS for a in kinds):
        return
    if value is None:
        ok = type(None) in allowed
    elif isinstance(value, bool):
        ok = bool in kinds
    else:
        ok = any(isinstance(value, a) or (a is float and isinstance(value, int)) for a in kinds)
    if not ok:
        wanted = " or ".join(_SCALARS[a] for a in kinds)
        if type(None) in allowed:
            wanted += " or none"
        raise UserError(f"setting '{key}' must be {wanted}, got {value!r}")


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
    """The defaults of `cls`, then the file's table, then the `key=value` items (unvalidated),
    as nested dicts."""
    base = dataclasses.asdict(cls())
    merged = copy.deepcopy(base)
    _merge_table(cls, merged, _file_values(section, path), section, path)
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise UserError(f"--set expects key=value, got '{item}'")
        _assign(merged, key.strip(), parse_value(raw.strip()), base, section, cls)
    return merged


def _merge_table(
    cls: type, merged: dict[str, Any], values: dict[str, Any], where: str, path: Any
) -> None:
    """Merge a file's table `where` (e.g. "curate" or "curate.minhash") into `merged`."""
    tables = _tables(cls)
    for key, value in values.items():
        if key not in merged:
            if "." not in where:
                raise UserError(f"config file {path}: unknown {where} setting '{key}'")
            raise UserError(
                f"config file {path}: unknown setting '{where}.{key}' "
                f"(known in [{where}]: {', '.join(merged)})"
            )
        if key in tables:
            if not isinstance(value, dict):
                raise UserError(
                    f"config file {path}: '{where}.{key}' is a table of settings; "
                    f"write them under [{where}.{key}]"
                )
            _merge_table(tables[key], merged[key], value, f"{where}.{key}", path)
        elif isinstance(merged[key], dict) and isinstance(value, dict):
            # A file's tables add to the defaults entry by entry (e.g. per-language overrides).
            for name, table in value.items():
                old = merged[key].get(name, {})
                merged[key][name] = {**old, **table} if isinstance(table, dict) else table
        else:
            merged[key] = value


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
            return "list" in str(f.type) or "tuple" in str(f.type)
    return False


def _assign(
    target: dict[str, Any], key: str, value: Any, base: dict[str, Any], section: str, cls: type
) -> None:
    """Set dotted `key` in the merged settings: through tables (nested dataclasses), whose
    keys are checked, then through free tables (dict settings such as `overrides`)."""
    parts = key.split(".")
    while len(parts) > 1 and parts[0] in _tables(cls):
        cls, target, base = _tables(cls)[parts[0]], target[parts[0]], base[parts[0]]
        section, parts = f"{section}.{parts[0]}", parts[1:]
    if parts[0] not in base:
        if "." in section:
            raise UserError(f"--set: unknown setting '{section}.{parts[0]}'")
        raise UserError(f"--set: unknown {section} setting '{parts[0]}'")
    if len(parts) == 1 and parts[0] in _tables(cls):
        raise UserError(
            f"--set: '{key}' is a table of settings; set one of them ({key}.NAME=VALUE)"
        )
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
