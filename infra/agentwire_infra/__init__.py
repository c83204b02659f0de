"""agentwire infrastructure: CDK app, local runtime, CLI."""
