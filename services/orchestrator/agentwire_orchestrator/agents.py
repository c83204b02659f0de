"""Agent definitions come from the contracts (`agentwire_contracts.agents`): one set of files every
service reads (`AGENTWIRE_AGENTS_DIR`, else the packaged defaults). Here: the catalog, read once per
process, and how a run names an agent (`name` for the latest version, `name@version` to pin one).
"""

from __future__ import annotations

from functools import cache

from agentwire_contracts.agents import AgentCatalog, AgentDefinition, UnknownAgent, load_catalog, split_ref

__all__ = ["AgentCatalog", "AgentDefinition", "UnknownAgent", "builtin_catalog", "resolve"]


@cache
def builtin_catalog() -> AgentCatalog:
    """The deployment's agents (read once per process)."""
    return load_catalog()


def resolve(catalog: AgentCatalog, ref: str, version: str | None = None) -> AgentDefinition | None:
    """The agent a run asks for (`version`, else the one in `ref`, else the latest), or None when the
    catalog has no such name or version."""
    name, ref_version = split_ref(ref)
    version = version or ref_version
    try:
        return catalog.get(name, version)
    except UnknownAgent:
        return None
