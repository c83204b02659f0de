"""What a model call costs: a price table per model (data, not code) applied to the recorded usage.

Prices are US dollars per million tokens, which is the same number as micro-dollars per token, so a
cost in micro-dollars is a plain dot product of token counts and prices (kept exact with `Decimal`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from importlib import resources
from pathlib import Path

from agentwire_contracts.content import Usage
from pydantic import BaseModel, ConfigDict, Field

#: Bedrock cross-region inference profiles prefix the model id with a geography.
_REGION_PREFIXES = ("us.", "eu.", "apac.", "global.", "us-gov.", "jp.", "au.", "ca.")


class ModelPrice(BaseModel):
    """USD per million tokens (= micro-dollars per token)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    #: Writing the 5-minute prompt cache (Anthropic: 1.25x input).
    cache_write: Decimal = Field(ge=0)
    #: Reading the prompt cache (Anthropic: 0.1x input).
    cache_read: Decimal = Field(ge=0)


@dataclass(frozen=True)
class Cost:
    microusd_exact: Decimal

    @property
    def microusd(self) -> int:
        return int(self.microusd_exact.to_integral_value(rounding=ROUND_HALF_UP))

    @property
    def usd(self) -> float:
        return float(self.microusd_exact / 1_000_000)


class PriceTable:
    def __init__(self, prices: dict[str, ModelPrice], default: ModelPrice | None = None) -> None:
        self._prices = prices
        #: Used for a model the table does not know; None = such a call costs what the table says: nothing.
        self._default = default

    @classmethod
    def from_json(cls, text: str, default: ModelPrice | None = None) -> PriceTable:
        raw = json.loads(text)
        return cls({name: ModelPrice.model_validate(p) for name, p in raw["models"].items()}, default)

    def price_of(self, model: str) -> ModelPrice | None:
        """Exact id, else the longest listed prefix (so dated ids such as `...-20250929` match)."""
        candidates = [model]
        for prefix in _REGION_PREFIXES:
            if model.startswith(prefix):
                candidates.append(model.removeprefix(prefix))
        for candidate in candidates:
            if candidate in self._prices:
                return self._prices[candidate]
        best: str | None = None
        for candidate in candidates:
            for name in self._prices:
                if candidate.startswith(name) and (best is None or len(name) > len(best)):
                    best = name
        return self._prices[best] if best is not None else self._default

    def has_exact(self, model: str) -> bool:
        """The table lists this very id (not only a prefix of it)."""
        return model in self._prices

    def knows(self, model: str) -> bool:
        return self.price_of(model) is not None

    def with_default(self, default: ModelPrice | None) -> PriceTable:
        """The same prices, with `default` for every model the table does not list."""
        return PriceTable(self._prices, default)

    def cost(self, model: str, usage: Usage) -> Cost:
        price = self.price_of(model)
        if price is None:
            return Cost(Decimal(0))
        total = (
            usage.input_tokens * price.input
            + usage.output_tokens * price.output
            + usage.cache_creation_input_tokens * price.cache_write
            + usage.cache_read_input_tokens * price.cache_read
        )
        return Cost(total)

    def estimate_microusd(self, model: str, input_tokens: int, max_output_tokens: int) -> int | None:
        """An upper bound of a call's cost before it is made: every input token at the dearer of the
        input and cache-write prices, and the full `max_tokens` of output. None for a model the table
        cannot price: no bound at all, which a budget must refuse rather than take for zero."""
        price = self.price_of(model)
        if price is None:
            return None
        total = input_tokens * max(price.input, price.cache_write) + max_output_tokens * price.output
        return math.ceil(total)


@cache
def default_price_table() -> PriceTable:
    return PriceTable.from_json(resources.files("agentwire_llm").joinpath("data/prices.json").read_text())


def load_price_table(path: Path | None, default: ModelPrice | None = None) -> PriceTable:
    if path is None:
        table = default_price_table()
        return table.with_default(default) if default is not None else table
    return PriceTable.from_json(path.read_text(), default)
