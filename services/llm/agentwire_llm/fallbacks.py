"""Fallback chains: which models answer when one is overloaded, unavailable or rate limited.

Configuration (`AGENTWIRE_LLM_FALLBACKS`, per model id) first, then the agent definition's
`fallback_models` (shared agent files in `agentwire_contracts.agents`); duplicates dropped, order kept.
"""

from __future__ import annotations

from collections.abc import Callable

from agentwire_contracts.agents import AgentCatalog, UnknownAgent, load_catalog


class FallbackChains:
    def __init__(
        self,
        configured: dict[str, list[str]],
        *,
        resolve_model: Callable[[str], str] = lambda model: model,
        catalog: Callable[[], AgentCatalog] = load_catalog,
    ) -> None:
        self._configured = configured
        self._resolve = resolve_model
        self._catalog = catalog
        self._loaded: AgentCatalog | None = None

    def __call__(self, model: str, agent: str) -> list[str]:
        """`agent` is `name@version` as the run pinned it (a bare name, from an older orchestrator, reads
        as the latest version)."""
        chain = [self._resolve(m) for m in self._configured.get(model, [])]
        if agent:
            try:
                if self._loaded is None:
                    self._loaded = self._catalog()
                chain += [self._resolve(m) for m in self._loaded.get_ref(agent).fallback_models]
            except UnknownAgent:
                pass
        seen: set[str] = {model}
        ordered: list[str] = []
        for candidate in chain:
            if candidate not in seen:
                seen.add(candidate)
                ordered.append(candidate)
        return ordered
