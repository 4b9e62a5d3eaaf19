"""Stripe's form encoding: ``a[b][0]=v`` keys in urlencoded bodies and query strings, parsed into
nested dicts and lists of strings (types are coerced later, by each endpoint's schema).

Accepted forms: ``k=v``, ``k[sub]=v`` at any depth up to DEPTH_MAX, indexed lists ``k[0]=v`` (what
the official SDKs send) and appended lists ``k[]=v`` (what curl users write). Percent-encoded
brackets are decoded before parsing. Every ambiguity is an error rather than a guess: the same
scalar twice, a scalar and a dict under one key, names and indexes mixed under one key.
"""

from __future__ import annotations

from typing import TypeAlias
from urllib.parse import parse_qsl

from farthing.http._errors import ApiError
from farthing.http._limits import bounded_int

__all__ = [
    "FORM_DEPTH_MAX",
    "FORM_KEYS_MAX",
    "FORM_KEY_BYTES_MAX",
    "FORM_LIST_LENGTH_MAX",
    "FormValue",
    "parse_form",
]

# Stripe's deepest parameters (e.g. line_items[0][price_data][product_data][metadata][k]) nest
# five levels; eight leaves room without allowing pathological recursion.
FORM_DEPTH_MAX = 8
FORM_KEYS_MAX = 1000
FORM_KEY_BYTES_MAX = 500
# Lists in Stripe's API are short (at most a few hundred items, e.g. line items).
FORM_LIST_LENGTH_MAX = 250

FormValue: TypeAlias = str | dict[str, "FormValue"] | list["FormValue"]

# While parsing, a list is a dict from int index to value; it becomes a list once complete.
_Node: TypeAlias = dict[str | int, "_Node | str"]


def _invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(
        400, type_="invalid_request_error", code="parameter_invalid", message=message, param=param
    )


def parse_form(encoded: str) -> dict[str, FormValue]:
    """The nested parameters of an urlencoded string; 400 in Stripe's envelope when malformed."""
    try:
        pairs = parse_qsl(
            encoded,
            keep_blank_values=True,
            strict_parsing=False,
            max_num_fields=FORM_KEYS_MAX,
            errors="strict",
        )
    except UnicodeDecodeError:  # First: it is a ValueError too.
        raise _invalid("Parameters must be UTF-8.") from None
    except ValueError:
        raise _invalid(f"Too many parameters (at most {FORM_KEYS_MAX}).") from None
    root: _Node = {}
    for key, value in pairs:
        if "\x00" in key or "\x00" in value:
            # No text column of PostgreSQL can hold one, so no object has one: refused as input.
            raise _invalid("Parameters must not contain NUL characters.")
        _insert(root, key, _path(key), value)
    converted = _convert(root, "")
    assert isinstance(converted, dict)
    return converted


def _path(key: str) -> list[str]:
    """``a[b][]`` -> ["a", "b", ""]."""
    if not key or len(key.encode()) > FORM_KEY_BYTES_MAX:
        raise _invalid(f"Parameter names must have 1 to {FORM_KEY_BYTES_MAX} bytes.")
    name, bracket, rest = key.partition("[")
    if not name or "]" in name:
        raise _invalid(f"Invalid parameter name: {key!r}.")
    segments = [name]
    while bracket:
        segment, closed, rest = rest.partition("]")
        if not closed or "[" in segment:
            raise _invalid(f"Invalid parameter name: {key!r}.", name)
        segments.append(segment)
        if not rest:
            break
        if not rest.startswith("["):
            raise _invalid(f"Invalid parameter name: {key!r}.", name)
        rest = rest[1:]
    if len(segments) > FORM_DEPTH_MAX:
        raise _invalid(f"Parameters nest at most {FORM_DEPTH_MAX} levels deep.", name)
    return segments


def _index(node: _Node, segment: str, key: str) -> str | int:
    """The child key for a segment: a name, or an int index for ``[]`` and ``[N]``."""
    if segment == "":
        return len(node)
    if segment.isdecimal() and segment.isascii():
        index = bounded_int(segment, 0, FORM_LIST_LENGTH_MAX - 1)
        if index is None:
            raise _invalid(f"Lists have at most {FORM_LIST_LENGTH_MAX} items.", key)
        return index
    return segment


def _insert(root: _Node, key: str, segments: list[str], value: str) -> None:
    node = root
    for depth, segment in enumerate(segments):
        child = segment if depth == 0 else _index(node, segment, key)
        if len(node) >= FORM_LIST_LENGTH_MAX and isinstance(child, int):
            raise _invalid(f"Lists have at most {FORM_LIST_LENGTH_MAX} items.", key)
        if node and isinstance(child, int) != isinstance(next(iter(node)), int):
            raise _invalid(f"Parameter {key!r} mixes list indexes and names.", key)
        last = depth == len(segments) - 1
        existing = node.get(child)
        if last:
            if existing is not None:
                raise _invalid(f"Parameter {key!r} is given more than once.", key)
            node[child] = value
            return
        if existing is None:
            existing = {}
            node[child] = existing
        if isinstance(existing, str):
            raise _invalid(f"Parameter {key!r} is both a value and an object.", key)
        node = existing


def _convert(node: _Node | str, param: str) -> FormValue:
    if isinstance(node, str):
        return node
    if node and isinstance(next(iter(node)), int):
        indexes = sorted(node)
        if indexes != list(range(len(indexes))):
            raise _invalid(f"List indexes of {param!r} must count from 0 without gaps.", param)
        return [_convert(node[index], param) for index in indexes]
    return {str(name): _convert(child, param or str(name)) for name, child in node.items()}
