"""Adapters: boto3 implementations of the gateway's ports."""
