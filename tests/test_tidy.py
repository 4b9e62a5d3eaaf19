"""Structural rules that keep the code base honest (TigerBeetle's tidy, in Python)."""

from __future__ import annotations

import ast
from pathlib import Path

import farthing

SOURCE = Path(farthing.__file__).parent
FUNCTION_LINES_MAX = 70
# The pure core may not reach the outside world: no clock, database, network or files.
CORE_FORBIDDEN_IMPORTS = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "psycopg",
    "sqlite3",
    "socket",
    "time",
    "os",
    "random",
    "farthing.db",
    "farthing.ledger_service",
    "farthing.http",
)


def _python_files() -> list[Path]:
    return [path for path in SOURCE.rglob("*.py") if "migrations" not in path.parts]


def test_functions_are_short() -> None:
    too_long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length > FUNCTION_LINES_MAX:
                    too_long.append(
                        f"{path.relative_to(SOURCE)}:{node.lineno} {node.name} {length}"
                    )
    assert too_long == []


def test_ledger_core_has_no_io_imports() -> None:
    offending: list[str] = []
    for path in (SOURCE / "ledger").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module is not None:
                names = [node.module]
            offending.extend(
                f"{path.name}: {name}"
                for name in names
                if any(name == bad or name.startswith(bad + ".") for bad in CORE_FORBIDDEN_IMPORTS)
            )
    assert offending == []


def test_no_float_in_money_code() -> None:
    """No float literal or float() call in the ledger core or its service."""
    found = []
    for package in ("ledger", "ledger_service"):
        for path in (SOURCE / package).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, float):
                    found.append(f"{path.name} literal {node.value}")
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id == "float"
                ):
                    found.append(f"{path.name}:{node.lineno} float()")
    # The group committer's idle interval is seconds of wall time, not money.
    assert found == ["_batcher.py literal 1.0"]
