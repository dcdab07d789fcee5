"""Named placeholders: numbered once for asyncpg, values put in that order, mistakes refused."""

from __future__ import annotations

import pytest

from dupdetect.store.pgvector import Statement


def test_names_are_numbered_once_in_order_of_first_use_and_casts_are_left_alone() -> None:
    statement = Statement("SELECT :b::int[], :a, :b WHERE x = :a::text AND y = 'a:b'")
    assert statement.text == "SELECT $1::int[], $2, $1 WHERE x = $2::text AND y = 'a:b'"
    assert statement.args(a="A", b="B") == ["B", "A"]


def test_a_missing_or_extra_value_is_an_error_not_a_shifted_argument() -> None:
    statement = Statement("SELECT :a, :b")
    with pytest.raises(TypeError, match=r"takes \['a', 'b'\]"):
        statement.args(a=1)
    with pytest.raises(TypeError):
        statement.args(a=1, b=2, c=3)
