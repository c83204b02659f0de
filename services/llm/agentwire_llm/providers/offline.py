"""The offline provider: deterministic rules that stand in for a model when there is no network or key.

It is good enough for the demo: it asks for the calculator and current_time tools when offered, phrases
their results, and answers "what's my name?" and "what was the last result?" from the context it is
given and nothing else, which is how a run shows that memory carries across turns. "Remember that …" and
"forget that …" call the memory service's `remember` / `forget` tools when the agent offers them, and
"what do you know about me?" is answered from the saved facts memory puts in the system prompt, which
is how a run shows that memory carries across sessions. Everything it says
is a pure function of the request, so a replayed call answers identically (tool_use ids included).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

from agentwire_contracts.content import (
    ContentBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
    Usage,
)
from agentwire_contracts.remote_tools import facts_in_system
from agentwire_contracts.tokens import BYTES_PER_TOKEN

from agentwire_llm.model import (
    Completion,
    CompletionRequest,
    StopReason,
    estimate_input_tokens,
    estimate_output_tokens,
)

CALCULATOR = "calculator"
CURRENT_TIME = "current_time"
SEND_NOTIFICATION = "send_notification"
REMEMBER = "remember"
FORGET = "forget"

#: Cities the offline model knows the IANA time zone of; any other place is answered in UTC.
CITY_TIMEZONES: dict[str, tuple[str, str]] = {
    "tokyo": ("Tokyo", "Asia/Tokyo"),
    "london": ("London", "Europe/London"),
    "new york": ("New York", "America/New_York"),
    "nyc": ("New York", "America/New_York"),
    "paris": ("Paris", "Europe/Paris"),
    "sydney": ("Sydney", "Australia/Sydney"),
    "berlin": ("Berlin", "Europe/Berlin"),
}

_NAME_STATEMENT = re.compile(r"\b(?:my name is|call me)\s+([A-Za-z][A-Za-z'-]*)", re.IGNORECASE)
_NAME_QUESTION = re.compile(
    r"\bwhat(?:'s|\s+is|\s+was)\s+my\s+name\b|\b(?:know|remember)\s+my\s+name\b|\bwho\s+am\s+i\b", re.IGNORECASE
)
_LAST_RESULT_QUESTION = re.compile(
    r"\b(?:last|previous|latest|most\s+recent)\s+(?:result|answer|calculation|computation)\b"
    r"|\bwhat\s+did\s+you\s+(?:compute|calculate|work\s+out)\b",
    re.IGNORECASE,
)
_TIME_QUESTION = re.compile(
    r"\bwhat(?:'s|\s+is)?\s+(?:the\s+)?(?:current\s+|local\s+)?time\b|\btime\s+is\s+it\b|\b(?:current|local)\s+time\b",
    re.IGNORECASE,
)
#: "Please notify the ops team: ...", "alert on-call that ...": a request to send a notification.
_NOTIFY_REQUEST = re.compile(r"\b(?:notify|alert|page|tell)\b.*\b(?:ops|on-?call|team)\b", re.IGNORECASE)
#: "Remember that I prefer tea." / "Please forget that I prefer tea." (a statement, not "do you remember…?").
_REMEMBER_REQUEST = re.compile(r"^\s*(?:please\s+)?remember\s+(?:that\s+)?(?P<fact>[^?]+?)[.!]?\s*$", re.IGNORECASE)
_FORGET_REQUEST = re.compile(r"^\s*(?:please\s+)?forget\s+(?:that\s+)?(?P<fact>[^?]+?)[.!]?\s*$", re.IGNORECASE)
_FACTS_QUESTION = re.compile(r"\bwhat\s+do\s+you\s+(?:know|remember)\s+about\s+me\b", re.IGNORECASE)
_URGENT = re.compile(r"\b(?:urgent|on-?call|page)\b", re.IGNORECASE)
_EXPRESSION_RUN = re.compile(r"[0-9.()+\-*/%^ ]+")
#: An operator with an operand on each side: what makes a run of digits an arithmetic question.
_OPERATION = re.compile(r"[\d)]\s*[-+*/%^]\s*-?\s*[(\d.]")
_DATE = re.compile(r"^\d{4}-\d{1,2}-\d{1,2}$")
_MULTIPLY_WORD = re.compile(r"(\d)\s*[x\u00d7]\s*(?=\d)")
_JSON_VALUE_KEYS = ("result", "value", "time", "current_time", "datetime")


def _normalize(text: str) -> str:
    return text.replace("\u2019", "'").replace("÷", "/")


def find_expression(text: str) -> str | None:
    """The longest arithmetic expression in `text` ("What is 1234 * 5678?" → "1234 * 5678"), if any."""
    text = _MULTIPLY_WORD.sub(r"\1 * ", _normalize(text))
    best: str | None = None
    for run in _EXPRESSION_RUN.findall(text):
        candidate = run.strip().strip("+*/%^.").strip()
        # A sentence's parenthesis may hug the expression: drop unmatched ones at either end.
        while candidate.count("(") > candidate.count(")") and candidate.startswith("("):
            candidate = candidate[1:].strip()
        while candidate.count(")") > candidate.count("(") and candidate.endswith(")"):
            candidate = candidate[:-1].strip()
        if candidate.count("(") != candidate.count(")") or _DATE.match(candidate):
            continue
        if _OPERATION.search(candidate) and (best is None or len(candidate) > len(best)):
            best = candidate
    return best


def find_city(text: str) -> tuple[str, str]:
    """(display name, IANA time zone) of the first well-known city mentioned, else UTC."""
    lowered = text.lower()
    hits = [(lowered.find(key), value) for key, value in CITY_TIMEZONES.items() if re.search(rf"\b{key}\b", lowered)]
    if not hits:
        return ("UTC", "UTC")
    return min(hits)[1]


def stated_name(text: str) -> str | None:
    match = _NAME_STATEMENT.search(_normalize(text))
    if match is None:
        return None
    name = match.group(1)
    return name[0].upper() + name[1:]


@dataclass(frozen=True)
class CalculatorResult:
    expression: str
    value: str


def _result_value(content: str) -> str:
    """A tool result is usually plain text; if it is a JSON object, use its obvious value field."""
    text = content.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict):
        for key in _JSON_VALUE_KEYS:
            if key in parsed:
                return str(parsed[key])
    return text


def _tool_uses_before(messages: list[Message], index: int) -> dict[str, ToolUseBlock]:
    """The tool calls of the assistant turn just before `messages[index]`, by id."""
    for message in reversed(messages[:index]):
        if message.role == "assistant":
            return {block.id: block for block in message.tool_uses()}
    return {}


def _tool_results(message: Message) -> list[ToolResultBlock]:
    return [block for block in message.content if isinstance(block, ToolResultBlock)]


def recall_name(messages: list[Message]) -> str | None:
    """The name the user most recently gave, looking only at the user turns of this context."""
    for message in reversed(messages):
        if message.role == "user":
            name = stated_name(message.text())
            if name:
                return name
    return None


def recall_last_calculation(messages: list[Message]) -> CalculatorResult | None:
    """The most recent successful calculator result found in the context's tool_result blocks."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.role != "user":
            continue
        calls = _tool_uses_before(messages, index)
        for result in reversed(_tool_results(message)):
            call = calls.get(result.tool_use_id)
            if call is not None and call.name == CALCULATOR and not result.is_error:
                return CalculatorResult(str(call.input.get("expression", "")), _result_value(result.content))
    return None


def notification_of(text: str) -> dict[str, str]:
    """The channel and message of a notification the user asked for: `oncall` when urgent, else `ops`;
    the message is what follows the first colon, or the whole request."""
    _, colon, rest = text.partition(":")
    message = " ".join((rest if colon and rest.strip() else text).split())[:500]
    return {"channel": "oncall" if _URGENT.search(text) else "ops", "message": message}


def describe_tool_result(call: ToolUseBlock | None, result: ToolResultBlock) -> str:
    value = _result_value(result.content)
    if call is None:
        return f"A tool returned: {value}."
    if result.is_error:
        return f'The {call.name} tool failed: "{result.content.strip()}".'
    if call.name == CALCULATOR:
        expression = call.input.get("expression")
        return f"{expression} = {value}." if expression else f"The result is {value}."
    if call.name == CURRENT_TIME:
        zone = call.input.get("timezone") or "UTC"
        return f"The current time in {zone} is {value}."
    if call.name == SEND_NOTIFICATION:
        return f"I notified the {call.input.get('channel', 'ops')} channel."
    if call.name == REMEMBER:
        return f"I'll remember that: {call.input.get('fact')}."
    if call.name == FORGET:
        return f"{value}"
    return f"The {call.name} tool returned: {value}."


class OfflineProvider:
    """Deterministic rules instead of a model; see the module docstring."""

    def __init__(self, model: str = "agentwire-offline-1") -> None:
        self._model = model

    @property
    def name(self) -> str:
        return "offline"

    def complete(self, request: CompletionRequest) -> Completion:
        messages = request.messages
        newest = messages[-1]
        results = _tool_results(newest) if newest.role == "user" else []
        if results:
            calls = _tool_uses_before(messages, len(messages) - 1)
            text = " ".join(describe_tool_result(calls.get(r.tool_use_id), r) for r in results)
            tool_uses: list[ToolUseBlock] = []
        else:
            text, tool_uses = self._answer(request)

        stop_reason: StopReason = "tool_use" if tool_uses else "end_turn"
        longest = int(request.max_tokens * BYTES_PER_TOKEN)
        if not tool_uses and len(text.encode()) > longest:
            cut = text.encode()[:longest].decode("utf-8", "ignore")
            text, stop_reason = cut, "max_tokens"
        content: list[ContentBlock] = [TextBlock(text=text)] if text else []
        content.extend(tool_uses)
        message = Message(role="assistant", content=content)
        usage = Usage(input_tokens=estimate_input_tokens(request), output_tokens=estimate_output_tokens(message))
        return Completion(message=message, stop_reason=stop_reason, usage=usage, model=self._model, provider=self.name)

    def _answer(self, request: CompletionRequest) -> tuple[str, list[ToolUseBlock]]:
        messages = request.messages
        user_text = next((m.text() for m in reversed(messages) if m.role == "user"), "")
        normalized = _normalize(user_text)
        offered = {tool.name for tool in request.tools}
        parts: list[str] = []
        calls: list[tuple[str, dict[str, str]]] = []

        name = stated_name(normalized)
        if name:
            parts.append(f"Nice to meet you, {name}!")
        if _NAME_QUESTION.search(normalized):
            known = recall_name(messages)
            parts.append(f"Your name is {known}." if known else "I don't know your name yet: you haven't told me.")
        if _LAST_RESULT_QUESTION.search(normalized):
            last = recall_last_calculation(messages[:-1])
            parts.append(
                f"The last result was {last.value} ({last.expression})."
                if last
                else "I haven't calculated anything in this conversation yet."
            )
        expression = find_expression(normalized)
        if expression:
            if CALCULATOR in offered:
                parts.append(f"Let me calculate {expression}.")
                calls.append((CALCULATOR, {"expression": expression}))
            else:
                parts.append(f"I would need the calculator tool to work out {expression}.")
        if _TIME_QUESTION.search(normalized):
            city, zone = find_city(normalized)
            if CURRENT_TIME in offered:
                parts.append(f"Let me check the time in {city}.")
                calls.append((CURRENT_TIME, {"timezone": zone}))
            else:
                parts.append("I would need the current_time tool to tell the time.")
        remember = _REMEMBER_REQUEST.match(user_text)
        if remember and REMEMBER in offered:
            parts.append("Saving that.")
            calls.append((REMEMBER, {"fact": remember.group("fact").strip()}))
        forget = _FORGET_REQUEST.match(user_text)
        if forget and FORGET in offered:
            parts.append("Forgetting that.")
            calls.append((FORGET, {"fact": forget.group("fact").strip()}))
        if _FACTS_QUESTION.search(normalized):
            # Only what memory put in the system prompt: the user's saved facts, never anything invented.
            facts = facts_in_system(request.system)
            parts.append(
                "You asked me to remember: " + "; ".join(facts) + "." if facts else "I have nothing saved about you."
            )
        if _NOTIFY_REQUEST.search(normalized) and SEND_NOTIFICATION in offered:
            notification = notification_of(user_text)
            parts.append(f"I'll send that to the {notification['channel']} channel.")
            calls.append((SEND_NOTIFICATION, notification))
        if not parts:
            snippet = " ".join(user_text.split())
            snippet = snippet if len(snippet) <= 200 else snippet[:197] + "..."
            parts.append(f'I am the offline model (no LLM provider is configured). You said: "{snippet}"')
        return " ".join(parts), [self._tool_use(request, i, name, args) for i, (name, args) in enumerate(calls)]

    @staticmethod
    def _tool_use(request: CompletionRequest, index: int, name: str, tool_input: dict[str, str]) -> ToolUseBlock:
        # Derived from the conversation, so a replay of the same request yields the same ids.
        conversation = json.dumps(
            [m.model_dump(mode="json") for m in request.messages], sort_keys=True, separators=(",", ":")
        )
        digest = hashlib.sha256(f"{conversation}|{index}|{name}".encode()).hexdigest()[:24]
        return ToolUseBlock(id=f"toolu_offline_{digest}", name=name, input=tool_input)
