"""agentwire llm service."""
