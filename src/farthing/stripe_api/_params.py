"""Typed readers of Stripe's form parameters: each value checked, bounded and named in errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from farthing.http._errors import ApiError
from farthing.http._limits import bounded_int
from farthing.ledger import is_currency
from farthing.stripe_api._form import FormValue
from farthing.stripe_api._request import Params, unknown_param

__all__ = [
    "AMOUNT_MAX",
    "EXPAND_DEPTH_MAX",
    "EXPAND_PATHS_MAX",
    "METADATA_KEYS_MAX",
    "METADATA_KEY_LENGTH_MAX",
    "METADATA_VALUE_LENGTH_MAX",
    "MetadataChange",
    "Reader",
    "invalid",
    "merge_metadata",
    "missing_param",
    "parse_metadata",
]

# Stripe's documented metadata limits.
METADATA_KEYS_MAX = 50
METADATA_KEY_LENGTH_MAX = 40
METADATA_VALUE_LENGTH_MAX = 500
# Stripe's largest amount: eight digits in minor units.
AMOUNT_MAX = 99_999_999
EXPAND_PATHS_MAX = 20
EXPAND_DEPTH_MAX = 4
_EXPAND_PATH_LENGTH_MAX = 200
_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def invalid(message: str, param: str) -> ApiError:
    return ApiError(
        400, type_="invalid_request_error", code="parameter_invalid", message=message, param=param
    )


def missing_param(param: str) -> ApiError:
    return ApiError(
        400,
        type_="invalid_request_error",
        code="parameter_missing",
        message=f"Missing required param: {param}.",
        param=param,
    )


@dataclass(frozen=True, slots=True)
class MetadataChange:
    """``metadata=`` clears everything; ``metadata[k]=`` removes k; other keys are set."""

    clear: bool
    set: dict[str, str]
    remove: frozenset[str]


def parse_metadata(value: FormValue) -> MetadataChange:
    if value == "":
        return MetadataChange(clear=True, set={}, remove=frozenset())
    if not isinstance(value, dict):
        raise invalid("metadata must be a hash of strings.", "metadata")
    if len(value) > METADATA_KEYS_MAX:
        raise invalid(f"metadata has at most {METADATA_KEYS_MAX} keys.", "metadata")
    changes: dict[str, str] = {}
    for key, item in value.items():
        param = f"metadata[{key}]"
        if len(key) > METADATA_KEY_LENGTH_MAX:
            raise invalid(
                f"Metadata keys have at most {METADATA_KEY_LENGTH_MAX} characters.", param
            )
        if not isinstance(item, str):
            raise invalid("Metadata values must be strings.", param)
        if len(item) > METADATA_VALUE_LENGTH_MAX:
            raise invalid(
                f"Metadata values have at most {METADATA_VALUE_LENGTH_MAX} characters.", param
            )
        changes[key] = item
    return MetadataChange(
        clear=False,
        set={key: item for key, item in changes.items() if item},
        remove=frozenset(key for key, item in changes.items() if not item),
    )


def merge_metadata(metadata: dict[str, str], change: MetadataChange | None) -> dict[str, str]:
    if change is None:
        return metadata
    kept = {} if change.clear else {k: v for k, v in metadata.items() if k not in change.remove}
    merged = kept | change.set
    # The bound is on the object, as Stripe's is: updates cannot add 50 keys at a time forever.
    if len(merged) > METADATA_KEYS_MAX:
        raise invalid(f"metadata has at most {METADATA_KEYS_MAX} keys.", "metadata")
    return merged


class Reader:
    """Reads named parameters once each; `finish` rejects whatever was not read."""

    def __init__(self, params: Params) -> None:
        self._params = params
        self._read: set[str] = set()

    def raw(self, name: str) -> FormValue | None:
        self._read.add(name)
        return self._params.get(name)

    def has(self, name: str) -> bool:
        return name in self._params

    def string(self, name: str, length_max: int, *, required: bool = False) -> str | None:
        value = self.raw(name)
        if value is None or value == "":
            if required:
                raise missing_param(name)
            return None
        if not isinstance(value, str):
            raise invalid(f"Invalid string: {name}.", name)
        if len(value) > length_max:
            raise invalid(f"{name} has at most {length_max} characters.", name)
        return value

    def choice(self, name: str, choices: frozenset[str], default: str) -> str:
        value = self.string(name, max(map(len, choices)) + 1) or default
        if value not in choices:
            raise invalid(f"Invalid {name}: must be one of {', '.join(sorted(choices))}.", name)
        return value

    def integer(self, name: str, low: int, high: int, *, required: bool = False) -> int | None:
        value = self.raw(name)
        if value is None:
            if required:
                raise missing_param(name)
            return None
        if not isinstance(value, str) or not value.isascii() or not value.isdecimal():
            raise invalid(f"Invalid integer: {name}.", name)
        number = bounded_int(value, low, high)
        if number is None:
            raise invalid(f"{name} must be between {low} and {high}.", name)
        return number

    def amount(self, name: str, *, required: bool = False) -> int | None:
        """A positive amount in the currency's minor unit (an integer, never a decimal)."""
        return self.integer(name, 1, AMOUNT_MAX, required=required)

    def boolean(self, name: str) -> bool | None:
        value = self.raw(name)
        if value is None:
            return None
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise invalid(f"Invalid boolean: {name}.", name)

    def currency(self, name: str = "currency", *, required: bool = True) -> str | None:
        value = self.string(name, 3, required=required)
        if value is None:
            return None
        if not is_currency(value.upper()):
            raise invalid(f"Invalid currency: {value}.", name)
        return value.lower()

    def metadata(self) -> MetadataChange | None:
        value = self.raw("metadata")
        return None if value is None else parse_metadata(value)

    def expand(self) -> tuple[str, ...]:
        value = self.raw("expand")
        if value is None:
            return ()
        items: list[Any] = (
            list(value.values())
            if isinstance(value, dict)
            else value
            if isinstance(value, list)
            else [value]
        )
        if len(items) > EXPAND_PATHS_MAX:
            raise invalid(f"expand takes at most {EXPAND_PATHS_MAX} paths.", "expand")
        for item in items:
            if not isinstance(item, str) or not 0 < len(item) <= _EXPAND_PATH_LENGTH_MAX:
                raise invalid("expand takes field paths such as 'customer'.", "expand")
            if item.count(".") >= EXPAND_DEPTH_MAX:
                raise invalid(f"expand paths have at most {EXPAND_DEPTH_MAX} levels.", "expand")
        return tuple(items)

    def ignore(self, *names: str) -> None:
        """Accepted for SDK compatibility, without effect (each is in docs/stripe-coverage.md)."""
        self._read.update(names)

    def finish(self) -> None:
        for name in self._params:
            if name not in self._read:
                raise unknown_param(name)
