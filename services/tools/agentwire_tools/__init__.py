"""agentwire tools service."""
