"""A stand-in for the Messages API's prompt cache, for tests and the caching benchmark (no network).

It computes `usage` the way Anthropic documents prompt caching: the prompt is tools, then system,
then messages, as a sequence of blocks; a block with `cache_control` is a breakpoint, and the prefix
ending there is written to the cache (if at least `min_cacheable_tokens` long). A request reads the
longest cached prefix that ends at a breakpoint or within `lookback_blocks` blocks before one. A
prefix only matches when its bytes are identical, which is what makes deterministic ordering matter.
Tokens are estimated at 4 characters per token of each block's JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx2

CHARS_PER_TOKEN = 4


def _strip(block: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in block.items() if key != "cache_control"}


def blocks_of(body: dict[str, Any]) -> Iterator[tuple[dict[str, Any], bool]]:
    """Every block of the prompt in the order the model reads it, with whether it is a breakpoint."""
    for tool in body.get("tools") or []:
        yield _strip(tool), "cache_control" in tool
    system = body.get("system")
    if isinstance(system, str):
        yield {"type": "text", "text": system}, False
    for block in system or []:
        if isinstance(block, dict):
            yield _strip(block), "cache_control" in block
    for message in body.get("messages") or []:
        content = message["content"]
        if isinstance(content, str):
            yield {"role": message["role"], "text": content}, False
            continue
        for block in content:
            yield {"role": message["role"], **_strip(block)}, "cache_control" in block


@dataclass
class PromptCache:
    min_cacheable_tokens: int = 1024
    lookback_blocks: int = 20
    entries: set[str] = field(default_factory=set)

    def usage_of(self, body: dict[str, Any], output_tokens: int) -> dict[str, int]:
        hashes: list[str] = []
        tokens: list[int] = []  # cumulative
        breakpoints: list[int] = []
        digest = hashlib.sha256()
        total = 0
        for index, (block, breakpoint) in enumerate(blocks_of(body)):
            rendered = json.dumps(block, separators=(",", ":"), ensure_ascii=False)
            digest.update(rendered.encode())
            hashes.append(digest.copy().hexdigest())
            total += math.ceil(len(rendered) / CHARS_PER_TOKEN)
            tokens.append(total)
            if breakpoint:
                breakpoints.append(index)
        hit = -1
        for bp in breakpoints:
            for position in range(bp, max(-1, bp - self.lookback_blocks), -1):
                if hashes[position] in self.entries:
                    hit = max(hit, position)
                    break
        read = tokens[hit] if hit >= 0 else 0
        last = breakpoints[-1] if breakpoints else -1
        written = 0
        if last > hit:
            for bp in breakpoints:
                if tokens[bp] >= self.min_cacheable_tokens:
                    self.entries.add(hashes[bp])
            if tokens[last] >= self.min_cacheable_tokens:
                written = tokens[last] - read
        cached_through = max(read + written, read)
        return {
            "input_tokens": total - cached_through,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": written,
            "cache_read_input_tokens": read,
        }


def fake_messages_api(
    replies: Callable[[dict[str, Any]], dict[str, Any]], cache: PromptCache | None = None
) -> tuple[httpx2.MockTransport, list[dict[str, Any]]]:
    """An httpx2 transport answering `POST /v1/messages` with `replies(body)` (a Messages API response
    body without usage), its `usage` computed by `cache`. Returns the transport and the request bodies."""
    cache = cache or PromptCache()
    seen: list[dict[str, Any]] = []

    def handle(request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        seen.append(body)
        reply = dict(replies(body))
        output = math.ceil(len(json.dumps(reply.get("content", []))) / CHARS_PER_TOKEN)
        reply["usage"] = cache.usage_of(body, output)
        return httpx2.Response(200, json=reply)

    return httpx2.MockTransport(handle), seen
