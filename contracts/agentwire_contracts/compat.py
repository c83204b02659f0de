"""Backward compatibility of a detail-type's schema against its released version.

Within a major version only additive, optional changes are allowed (a MINOR bump). A consumer built
against the released schema must keep working: every property it knows keeps its type, nothing it
relies on disappears, and no producer may start requiring a field old producers never sent.
"""

from __future__ import annotations

from typing import Any


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root["$defs"][ref.removeprefix("#/$defs/")], root)
    return schema


def _type_signature(schema: dict[str, Any], root: dict[str, Any]) -> Any:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return ("anyOf", sorted(str(_type_signature(s, root)) for s in schema["anyOf"]))
    if "oneOf" in schema:
        return ("oneOf", sorted(str(_type_signature(s, root)) for s in schema["oneOf"]))
    if "const" in schema:
        return ("const", schema["const"])
    kind = schema.get("type")
    if kind == "array":
        return ("array", _type_signature(schema.get("items", {}), root))
    return kind


def breaking_changes(released: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Every change from `released` to `current` that could break a producer or consumer."""
    problems: list[str] = []
    _compare(released, current, released, current, "", problems)
    return problems


def _compare(
    old: dict[str, Any],
    new: dict[str, Any],
    old_root: dict[str, Any],
    new_root: dict[str, Any],
    path: str,
    problems: list[str],
) -> None:
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    old_props: dict[str, Any] = old.get("properties", {})
    new_props: dict[str, Any] = new.get("properties", {})
    for name, old_prop in old_props.items():
        where = f"{path}.{name}" if path else name
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        old_sig = _type_signature(old_prop, old_root)
        new_sig = _type_signature(new_props[name], new_root)
        if old_sig != new_sig:
            problems.append(f"{where}: type changed from {old_sig} to {new_sig}")
            continue
        _compare(old_prop, new_props[name], old_root, new_root, where, problems)
        old_items = _resolve(old_prop, old_root).get("items")
        new_items = _resolve(new_props[name], new_root).get("items")
        if isinstance(old_items, dict) and isinstance(new_items, dict):
            _compare(old_items, new_items, old_root, new_root, f"{where}[]", problems)
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        where = f"{path}.{name}" if path else name
        problems.append(f"{where}: became required")


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")
    return int(major), int(minor)
