"""Turn hydra's composition errors about unknown keys into one line that names the key and the
keys that are valid at that place of the config."""

from __future__ import annotations

import dataclasses
import re
import typing


def _dataclasses_below(cls, seen: dict[str, type]) -> None:
    if not isinstance(cls, type) or not dataclasses.is_dataclass(cls) or cls.__name__ in seen:
        return
    seen[cls.__name__] = cls
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            _dataclasses_below(type(default), seen)
        _dataclasses_below(hints.get(f.name), seen)


def schema_classes(roots) -> dict[str, type]:
    """Every dataclass reachable from `roots`, by class name (hydra's errors name the class)."""
    seen: dict[str, type] = {}
    for cls in roots:
        _dataclasses_below(cls, seen)
    return seen


def unknown_key_message(error_text: str, classes: dict[str, type]) -> str | None:
    """'unknown config key a.b.c; valid keys of a.b: ...' for hydra's ConfigKeyError text, or None
    when the text is not about an unknown key of one of our dataclasses."""
    key = re.search(r"full_key:\s*(\S+)", error_text)
    cls = re.search(r"object_type=(\w+)", error_text)
    if not key or not cls or cls.group(1) not in classes:
        return None
    full_key = key.group(1)
    parent = full_key.rsplit(".", 1)[0] if "." in full_key else "<top level>"
    valid = ", ".join(f.name for f in dataclasses.fields(classes[cls.group(1)]))
    hint = (" (a key of another class? model.encoder=... / model.llm=... picks the class)"
            if parent in ("model.encoder", "model.llm") else "")
    return f"unknown config key '{full_key}'{hint}; valid keys of {parent}: {valid}"
