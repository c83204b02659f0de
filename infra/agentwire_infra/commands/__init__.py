"""Subcommands of `agentwire` contributed by module: each module here defines

    def register(commands: argparse._SubParsersAction) -> None

adding its parser(s) with `set_defaults(handler=...)`. `agentwire_infra.cli` registers every module, so
a new command is a new file, not an edit of the CLI.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from typing import Any


def register_all(commands: argparse._SubParsersAction[Any]) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(commands)
