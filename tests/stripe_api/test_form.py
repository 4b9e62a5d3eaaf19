"""Stripe's form encoding, parsed into nested dicts and lists; hostile input is a 400."""

from __future__ import annotations

import pytest

from farthing.http._errors import ApiError
from farthing.stripe_api import (
    FORM_DEPTH_MAX,
    FORM_KEY_BYTES_MAX,
    FORM_KEYS_MAX,
    FORM_LIST_LENGTH_MAX,
    parse_form,
)


def test_flat_and_nested_keys() -> None:
    assert parse_form("email=a%40b.c&name=A+B%26C&description=") == {
        "email": "a@b.c",
        "name": "A B&C",
        "description": "",
    }
    assert parse_form("metadata[k]=v&metadata[e]=&a[b][c]=d") == {
        "metadata": {"k": "v", "e": ""},
        "a": {"b": {"c": "d"}},
    }


def test_indexed_and_appended_lists() -> None:
    assert parse_form("expand[0]=x&expand[1]=y") == {"expand": ["x", "y"]}
    assert parse_form("expand[]=x&expand[]=y") == {"expand": ["x", "y"]}
    assert parse_form("expand[1]=y&expand[0]=x") == {"expand": ["x", "y"]}
    assert parse_form("items[0][price]=p&items[0][quantity]=2&items[1][price]=q") == {
        "items": [{"price": "p", "quantity": "2"}, {"price": "q"}]
    }


def test_percent_encoded_brackets_as_requests_sends_them() -> None:
    assert parse_form("expand%5B0%5D=x&created%5Bgte%5D=5&limit=3") == {
        "expand": ["x"],
        "created": {"gte": "5"},
        "limit": "3",
    }


def test_empty_input() -> None:
    assert parse_form("") == {}


def _refused(encoded: str) -> ApiError:
    with pytest.raises(ApiError) as raised:
        parse_form(encoded)
    error = raised.value
    assert error.status == 400
    assert error.type == "invalid_request_error"
    assert error.message
    return error


@pytest.mark.parametrize(
    "encoded",
    [
        "a=1&a=2",  # the same scalar twice
        "a=1&a[b]=2",  # a scalar, then a dict under it
        "a[b]=2&a=1",  # a dict, then a scalar over it
        "a[b][c]=1&a[b]=2",
        "a[0]=1&a[x]=2",  # indexes and names mixed
        "a[x]=1&a[]=2",
        "a[1]=x",  # a gap in the indexes
        "a[0]=1&a[0]=2",
        "a]=1",
        "a[b=1",
        "a[b]c=1",
        "a[b[c]]=1",
        "[a]=1",
        "=1",
    ],
)
def test_ambiguous_or_malformed_keys_are_refused(encoded: str) -> None:
    _refused(encoded)


def test_depth_is_bounded() -> None:
    ok = "a" + "[x]" * (FORM_DEPTH_MAX - 1) + "=1"
    assert parse_form(ok)
    error = _refused("a" + "[x]" * FORM_DEPTH_MAX + "=1")
    assert error.param == "a"
    _refused("a" + "[x]" * 10_000 + "=1")


def test_key_count_is_bounded() -> None:
    assert len(parse_form("&".join(f"k{i}=1" for i in range(FORM_KEYS_MAX)))) == FORM_KEYS_MAX
    _refused("&".join(f"k{i}=1" for i in range(FORM_KEYS_MAX + 1)))


def test_list_length_is_bounded() -> None:
    _refused(f"a[{FORM_LIST_LENGTH_MAX}]=1")
    _refused("a[99999999999999999999999]=1")
    _refused("&".join(["a[]=1"] * (FORM_LIST_LENGTH_MAX + 1)))
    assert len(parse_form("&".join(["a[]=1"] * FORM_LIST_LENGTH_MAX))["a"]) == (
        FORM_LIST_LENGTH_MAX
    )


def test_key_length_is_bounded() -> None:
    _refused("k" * (FORM_KEY_BYTES_MAX + 1) + "=1")


def test_non_ascii_digits_are_names_not_indexes() -> None:
    # ARABIC-INDIC DIGIT ONE is a decimal digit to str.isdecimal; it must stay a name.
    assert parse_form("a[%D9%A1]=1") == {"a": {"\u0661": "1"}}


def test_invalid_utf8_is_refused() -> None:
    _refused("a=%FF")
