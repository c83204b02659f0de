"""Adapters: the AWS side of the memory service's ports."""
