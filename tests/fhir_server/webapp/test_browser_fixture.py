"""The session's chromium (tests/conftest.py) leaves no trace in the tests that do not use it: a
test of another module that runs, in the same process, while the browser is up is not told that
an asyncio loop runs (Playwright's sync API marks its own loop as running between its calls)."""

from __future__ import annotations

import asyncio


def test_a_test_beside_the_session_browser_can_run_asyncio(_chromium):  # type: ignore[no-untyped-def]
    chromium, _ = _chromium
    assert chromium.is_connected()  # up, for the browser tests before and after this one
    assert asyncio._get_running_loop() is None
    assert asyncio.run(asyncio.sleep(0, result="ran")) == "ran"
