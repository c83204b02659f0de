"""agentwire gateway service."""
