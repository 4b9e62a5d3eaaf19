"""Fixtures of the security tests: the real `farthing serve` of the /v1 suite and fresh accounts.

`v1_server` is the /v1 suite's session fixture (SQLite and PostgreSQL, with a vault key), imported
here so that it is a fixture of this directory too: the security tests get their own server
processes, whose databases fill with fuzzed junk that no other suite sees.
"""

from __future__ import annotations

import pytest

from tests.http.conftest import Server
from tests.stripe_api.conftest import Account, new_account, v1_server

__all__ = ["Account", "account", "new_account", "v1_server"]


@pytest.fixture
def account(v1_server: Server) -> Account:
    """A new tenant with a test and a live secret key."""
    return new_account(v1_server)
