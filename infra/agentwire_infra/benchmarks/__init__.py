"""Benchmark suites beside the run-throughput benchmark of `agentwire bench`.

Each module here defines `NAME: str`, `DESCRIPTION: str` and

    def run(workdir: pathlib.Path) -> dict[str, Any]

which measures one thing (starting whatever it needs, e.g. its own emulator), prints a short table and
returns JSON-ready figures; `agentwire bench` stores them under `suites.<NAME>` in bench/results.json.
Figures are printed and recorded, never asserted: timing belongs here, not in tests.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def suites() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        found[module.NAME] = module
    return found
