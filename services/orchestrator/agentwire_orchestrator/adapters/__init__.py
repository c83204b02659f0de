"""Adapters: the boto3 side of the orchestrator's ports."""
