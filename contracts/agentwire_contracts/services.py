"""The five service names; the import-boundary test and the runtime iterate over these."""

SERVICES: tuple[str, ...] = ("gateway", "orchestrator", "llm", "tools", "memory")
