"""The package imports on its own: farthing.http and farthing.stripe_api depend on each other's
modules, so a fresh interpreter importing either one first must work."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "farthing.stripe_api",
        "farthing.stripe_api.customers",
        "farthing.stripe_api.payment_methods",
        "farthing.http",
    ],
)
def test_imports_in_a_fresh_interpreter(module: str) -> None:
    subprocess.run(
        [sys.executable, "-c", f"import {module}; from farthing.http import create_app"],
        check=True,
        timeout=60,
    )
