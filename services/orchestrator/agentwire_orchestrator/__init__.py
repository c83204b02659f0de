"""agentwire orchestrator service."""
