"""The offline provider's rules, driven through a whole demo conversation."""

from __future__ import annotations

import math

from agentwire_contracts.content import Message, TextBlock, ToolSpec, ToolUseBlock
from agentwire_llm.model import Completion, CompletionRequest, estimate_input_tokens
from agentwire_llm.providers.offline import OfflineProvider, find_expression
from llm_testkit import CALCULATOR, CURRENT_TIME, assistant_tool_use, tool_result, user

provider = OfflineProvider()


def ask(messages: list[Message], tools=(CALCULATOR, CURRENT_TIME), max_tokens: int = 1024) -> Completion:
    return provider.complete(
        CompletionRequest(
            model="default", system="Be brief.", messages=messages, tools=list(tools), max_tokens=max_tokens
        )
    )


def test_llm_demo_conversation_remembers_name_and_result_only_from_context() -> None:
    conversation = [user("My name is Ada. I like numbers.")]
    greeting = ask(conversation)
    assert greeting.stop_reason == "end_turn"
    assert "Ada" in greeting.text
    assert greeting.tool_calls == []

    conversation += [greeting.message, user("What is 1234 * 5678?")]
    asking = ask(conversation)
    assert asking.stop_reason == "tool_use"
    assert isinstance(asking.message.content[0], TextBlock)
    assert [(c.name, c.input) for c in asking.tool_calls] == [("calculator", {"expression": "1234 * 5678"})]

    call_id = asking.tool_calls[0].id
    conversation += [asking.message, tool_result(call_id, "7006652")]
    answered = ask(conversation)
    assert answered.stop_reason == "end_turn"
    assert answered.text == "1234 * 5678 = 7006652."

    conversation += [answered.message, user("What's my name and what was the last result?")]
    recalled = ask(conversation)
    assert recalled.stop_reason == "end_turn"
    assert recalled.text == "Your name is Ada. The last result was 7006652 (1234 * 5678)."

    # The same question without that history: nothing to remember, and it must not invent anything.
    forgetful = ask([user("What's my name and what was the last result?")])
    assert "Ada" not in forgetful.text and "7006652" not in forgetful.text
    assert "don't know your name" in forgetful.text
    assert "haven't calculated anything" in forgetful.text


def test_llm_offline_replay_is_identical_and_ids_depend_on_the_conversation() -> None:
    first = ask([user("What is 1234 * 5678?")])
    again = ask([user("What is 1234 * 5678?")])
    other = ask(
        [user("Hi"), Message(role="assistant", content=[TextBlock(text="Hello")]), user("What is 1234 * 5678?")]
    )
    assert first == again
    assert first.tool_calls[0].id.startswith("toolu_")
    assert other.tool_calls[0].id != first.tool_calls[0].id


def test_llm_offline_finds_expressions_in_prose() -> None:
    assert find_expression("calculate (2+3)*4") == "(2+3)*4"
    assert find_expression("What is 1234 * 5678?") == "1234 * 5678"
    assert find_expression("what is 3 x 4?") == "3 * 4"
    assert find_expression("I was born on 1990-05-01") is None
    assert find_expression("I have 3 cats") is None
    completion = ask([user("calculate (2+3)*4")])
    assert completion.tool_calls[0].input == {"expression": "(2+3)*4"}


def test_llm_offline_does_not_call_a_tool_it_was_not_offered() -> None:
    completion = ask([user("What is 2 + 2?")], tools=[CURRENT_TIME])
    assert completion.stop_reason == "end_turn"
    assert completion.tool_calls == []
    assert "calculator" in completion.text


def test_llm_offline_asks_for_the_time_in_a_known_city_or_utc() -> None:
    tokyo = ask([user("what time is it in Tokyo?")])
    assert [(c.name, c.input) for c in tokyo.tool_calls] == [("current_time", {"timezone": "Asia/Tokyo"})]
    new_york = ask([user("What's the time in New York right now")])
    assert new_york.tool_calls[0].input == {"timezone": "America/New_York"}
    nowhere = ask([user("What time is it in Reykjavik?")])
    assert nowhere.tool_calls[0].input == {"timezone": "UTC"}


def test_llm_offline_phrases_time_results_and_tool_errors() -> None:
    time_call = assistant_tool_use("toolu_1", "current_time", {"timezone": "Asia/Tokyo"})
    timed = ask([user("what time is it in Tokyo?"), time_call, tool_result("toolu_1", "2025-01-01T09:00:00+09:00")])
    assert timed.text == "The current time in Asia/Tokyo is 2025-01-01T09:00:00+09:00."

    calc_call = assistant_tool_use("toolu_2", "calculator", {"expression": "1/0"})
    failed = ask([user("What is 1/0?"), calc_call, tool_result("toolu_2", "division by zero", is_error=True)])
    assert failed.stop_reason == "end_turn"
    assert failed.text == 'The calculator tool failed: "division by zero".'


def test_llm_offline_pairs_several_results_with_their_calls() -> None:
    calls = Message(
        role="assistant",
        content=[
            ToolUseBlock(id="toolu_a", name="calculator", input={"expression": "2+2"}),
            ToolUseBlock(id="toolu_b", name="current_time", input={"timezone": "Europe/Paris"}),
        ],
    )
    results = Message.model_validate(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_b", "content": "10:00"},
                {"type": "tool_result", "tool_use_id": "toolu_a", "content": '{"result": 4}'},
            ],
        }
    )
    completion = ask([user("2+2 and the time in Paris?"), calls, results])
    assert completion.text == "The current time in Europe/Paris is 10:00. 2+2 = 4."


def test_llm_offline_last_result_skips_failed_calculations() -> None:
    conversation = [
        user("What is 6 * 7?"),
        assistant_tool_use("t1", "calculator", {"expression": "6 * 7"}),
        tool_result("t1", "42"),
        user("What is 1/0?"),
        assistant_tool_use("t2", "calculator", {"expression": "1/0"}),
        tool_result("t2", "division by zero", is_error=True),
        user("what did you compute?"),
    ]
    assert ask(conversation).text == "The last result was 42 (6 * 7)."


def test_llm_offline_fallback_says_what_it_is_and_reflects_the_message() -> None:
    completion = ask([user("Tell me a story about dragons")])
    assert completion.stop_reason == "end_turn"
    assert "offline model" in completion.text
    assert "Tell me a story about dragons" in completion.text


def test_llm_offline_estimates_usage_with_the_shared_calibration() -> None:
    """Usage is the estimate memory sized the context with: UTF-8 bytes / 3.5, plus a little framing per
    message and block; offering tools adds their specs and the tool-use prompt."""
    request = CompletionRequest(model="m", messages=[user("hi")])
    completion = provider.complete(request)
    assert completion.usage.input_tokens == 4 + 3 + math.ceil(len(b"hi") / 3.5)
    assert completion.usage.output_tokens == math.ceil(len(completion.text.encode()) / 3.5)
    with_system = CompletionRequest(model="m", system="x" * 350, messages=[user("hi")])
    assert estimate_input_tokens(with_system) == completion.usage.input_tokens + 100
    with_tools = with_system.model_copy(update={"tools": [CALCULATOR]})
    assert estimate_input_tokens(with_tools) > estimate_input_tokens(with_system) + 350
    assert provider.complete(CompletionRequest(model="m", messages=[user("")])).usage.input_tokens >= 1


def test_llm_offline_stops_at_max_tokens() -> None:
    completion = ask([user("Tell me " + "a very long story " * 50)], max_tokens=5)
    assert completion.stop_reason == "max_tokens"
    assert len(completion.text) == 17  # 5 tokens x 3.5 bytes, ASCII
    assert completion.usage.output_tokens == 5


SEND_NOTIFICATION = ToolSpec(
    name="send_notification",
    description="Send a notification to an operations channel.",
    input_schema={"type": "object", "properties": {"channel": {"type": "string"}, "message": {"type": "string"}}},
)


def test_llm_offline_sends_a_requested_notification_only_when_the_tool_is_offered() -> None:
    asked = [user("Please notify the ops team: the nightly export finished late.")]
    answer = ask(asked, tools=(CALCULATOR, SEND_NOTIFICATION))
    assert answer.stop_reason == "tool_use"
    (call,) = answer.message.tool_uses()
    assert call.name == "send_notification"
    assert call.input == {"channel": "ops", "message": "the nightly export finished late."}

    urgent = ask([user("Alert on-call, it's urgent: the database is down")], tools=(SEND_NOTIFICATION,))
    assert urgent.message.tool_uses()[0].input["channel"] == "oncall"

    assert ask(asked, tools=(CALCULATOR,)).message.tool_uses() == []

    after = ask([*asked, answer.message, tool_result(call.id, '{"status": "sent", "channel": "ops"}')])
    assert after.stop_reason == "end_turn" and "notified the ops channel" in after.message.text()


def test_llm_offline_remembers_and_forgets_through_memory_tools_and_reads_saved_facts_from_the_system() -> None:
    from agentwire_contracts.remote_tools import FACTS_HEADING, REMOTE_TOOLS

    memory_tools = (CALCULATOR, CURRENT_TIME, REMOTE_TOOLS["remember"].spec, REMOTE_TOOLS["forget"].spec)

    def facts_request(text: str, system: str = "Be brief.", tools=memory_tools) -> Completion:
        return provider.complete(
            CompletionRequest(model="default", system=system, messages=[user(text)], tools=list(tools))
        )

    saving = facts_request("Please remember that I prefer green tea.")
    assert [(c.name, c.input) for c in saving.tool_calls] == [("remember", {"fact": "I prefer green tea"})]
    call_id = saving.tool_calls[0].id
    saved = ask([user("Please remember that I prefer green tea."), saving.message, tool_result(call_id, "Saved.")])
    assert saved.text == "I'll remember that: I prefer green tea."
    forgetting = facts_request("Forget that I prefer green tea")
    assert [(c.name, c.input) for c in forgetting.tool_calls] == [("forget", {"fact": "I prefer green tea"})]

    # A question is not a request to save anything; and without the tools, nothing is called.
    assert facts_request("Do you remember my name?").tool_calls == []
    assert facts_request("Remember that I prefer green tea.", tools=(CALCULATOR,)).tool_calls == []

    # What it knows about the user is exactly what memory put under the facts heading, nothing else.
    system = f"Be brief.\n\n{FACTS_HEADING}\n- I prefer green tea\n- I live in Lisbon\n\nSomething else: - not a fact"
    known = facts_request("What do you know about me?", system=system)
    assert known.text == "You asked me to remember: I prefer green tea; I live in Lisbon."
    assert facts_request("What do you know about me?").text == "I have nothing saved about you."
