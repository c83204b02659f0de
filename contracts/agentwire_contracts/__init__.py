"""agentwire event contracts."""
