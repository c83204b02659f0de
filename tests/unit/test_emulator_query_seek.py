"""The emulator's Query seeks its key condition by binary search (as DynamoDB seeks its index) instead of
handing moto every item of the partition. Property: for any partition, key condition, Limit, start key
and direction, the patched Query answers exactly what moto's own Query answers (items, ScannedCount and
LastEvaluatedKey), on moto's real `Table`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from agentwire_infra.local.emulator import key_condition_bounds, query_only_the_partition, range_order
from hypothesis import example, given, settings
from hypothesis import strategies as st
from moto.dynamodb.comparisons import get_comparison_func
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

ALPHABET = "ab#~\u00e9\U0001f600"
keys_strategy = st.lists(st.text(alphabet=ALPHABET, max_size=4), unique=True, max_size=30)
value_strategy = st.text(alphabet=ALPHABET, max_size=3)
comparison_strategy = st.sampled_from(["=", "<", "<=", ">", ">=", "BETWEEN", "BEGINS_WITH", None])


@pytest.fixture(scope="module")
def queries() -> Iterator[tuple[Any, Any]]:
    """moto's own Table.query and the emulator's, restored afterwards."""
    original = Table.query
    query_only_the_partition()
    patched = Table.query
    Table.query = original  # type: ignore[method-assign]
    yield original, patched


def partition_table(keys: list[str]) -> Table:
    table = Table(
        "seek",
        account_id="123456789012",
        region="us-east-1",
        schema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        attr=[{"AttributeName": "pk", "AttributeType": "S"}, {"AttributeName": "sk", "AttributeType": "S"}],
    )
    for pk in ("other", "p"):
        for key in keys:
            table.put_item({"pk": {"S": pk}, "sk": {"S": key}, "v": {"S": f"{pk}/{key}"}})
    return table


def answer(query: Any, table: Table, **arguments: Any) -> tuple[list[str], int, Any]:
    items, scanned, last_key = query(table, DynamoType({"S": "p"}), projection_expressions=None, **arguments)
    return [item.attrs["v"].value for item in items], scanned, last_key


@settings(max_examples=300, deadline=None)
# A later page that ends where the range ends still sees the next key (outside the range): LastEvaluatedKey.
@example(keys=["a", "b", "c"], comparison="<", first="c", second="", limit=1, forward=True, start_at=0)
@example(keys=["a", "b", "c"], comparison=">", first="a", second="", limit=1, forward=False, start_at=2)
@given(
    keys=keys_strategy,
    comparison=comparison_strategy,
    first=value_strategy,
    second=value_strategy,
    limit=st.one_of(st.none(), st.integers(min_value=1, max_value=12)),
    forward=st.booleans(),
    start_at=st.one_of(st.none(), st.integers(min_value=0, max_value=29)),
)
def test_the_seek_answers_what_moto_answers(
    queries: tuple[Any, Any],
    keys: list[str],
    comparison: str | None,
    first: str,
    second: str,
    limit: int | None,
    forward: bool,
    start_at: int | None,
) -> None:
    original, patched = queries
    table = partition_table(keys)
    if comparison == "BETWEEN":
        first, second = sorted((first, second))
    range_objs = [DynamoType({"S": first})] + ([DynamoType({"S": second})] if comparison == "BETWEEN" else [])
    start_key = None
    if start_at is not None and keys:
        start_key = {"pk": {"S": "p"}, "sk": {"S": sorted(keys)[start_at % len(keys)]}}
    arguments = {
        "range_comparison": comparison,
        "range_objs": range_objs if comparison else [],
        "limit": limit,
        "exclusive_start_key": start_key,
        "scan_index_forward": forward,
    }
    assert answer(patched, table, **arguments) == answer(original, table, **arguments)


@given(keys=keys_strategy, comparison=comparison_strategy, value=value_strategy)
def test_the_bounds_hold_exactly_the_keys_that_meet_the_condition(
    keys: list[str], comparison: str | None, value: str
) -> None:
    sorted_keys = sorted(keys)
    values = [value, value + "~"] if comparison == "BETWEEN" else [value]
    bounds = key_condition_bounds(sorted_keys, comparison, values)
    if bounds is None:  # only an empty prefix is not sought (every key starts with it)
        assert comparison == "BEGINS_WITH" and value == ""
        return
    low, high = bounds
    meets = get_comparison_func(comparison) if comparison else (lambda *_: True)
    assert sorted_keys[low:high] == [key for key in sorted_keys if meets(key, *values)]


def test_numbers_order_by_value_not_by_text() -> None:
    order = range_order("N")
    assert sorted(["10", "9", "-1.5"], key=lambda text: order(DynamoType({"N": text}))) == ["-1.5", "9", "10"]
