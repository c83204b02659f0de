"""Adapters: the AWS side of the llm service's ports."""
