"""agentwire memory service."""
