"""The public surface of ``farthing.ledger``: a sorted ``__all__`` that names everything public."""

from __future__ import annotations

import importlib
import types

import pytest

import farthing.ledger

SUBMODULES = ["_currency", "_engine", "_journal", "_limits", "_model", "_results"]


def isort_key(name: str) -> tuple[int, str]:
    """The order of ruff's RUF022: CONSTANTS, then Classes, then functions, each alphabetical."""
    if name.isupper():
        return 0, name
    if name[0].isupper():
        return 1, name
    return 2, name


def test_isort_key() -> None:
    names = ["create", "Account", "BALANCE_MAX", "AMOUNT_MAX", "Balances", "apply"]
    assert sorted(names, key=isort_key) == [
        "AMOUNT_MAX",
        "BALANCE_MAX",
        "Account",
        "Balances",
        "apply",
        "create",
    ]


def test_all_is_sorted_and_unique() -> None:
    names = farthing.ledger.__all__
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)


def test_every_exported_name_resolves() -> None:
    for name in farthing.ledger.__all__:
        assert getattr(farthing.ledger, name) is not None, name


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(farthing.ledger).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"  # from __future__ import annotations
    }
    assert public == set(farthing.ledger.__all__)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from farthing.ledger import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(farthing.ledger.__all__)


@pytest.mark.parametrize("name", SUBMODULES)
def test_submodule_all_is_sorted_resolves_and_is_reexported(name: str) -> None:
    module = importlib.import_module(f"farthing.ledger.{name}")
    names: list[str] = module.__all__
    assert names == sorted(names, key=isort_key)
    for exported in names:
        assert getattr(farthing.ledger, exported) is getattr(module, exported), exported


def test_the_package_reexports_every_submodule_name() -> None:
    union = {
        exported
        for name in SUBMODULES
        for exported in importlib.import_module(f"farthing.ledger.{name}").__all__
    }
    assert union == set(farthing.ledger.__all__)


def test_public_classes_and_functions_live_in_the_package() -> None:
    for name in farthing.ledger.__all__:
        value = getattr(farthing.ledger, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__module__.startswith("farthing.ledger."), name
