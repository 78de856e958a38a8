"""What the browser tests' fixtures save, each figure beside its baseline in the same run.

    .venv/bin/python bench/browser_tests.py [--rounds 5]

Rounds alternate the old and the new way (old, new, new, old, ...), so both meet the same load:

* ``browser``: a test's browser before (a Playwright driver started and Debian chromium launched
  for the test, closed after it) and now (a fresh context of the session's chromium, closed
  after the test); each opens the clinicians' app's page.
* ``sign-in``: a patient's portal sign-in, the whole journey (button, Hearth's login page, the
  portal's code + PKCE exchange: ``sign_in``) for a new user, up to the Home screen: what every
  test that signs in pays. (A shortcut through the token endpoint into the portal's session
  storage measured 1.12 s against the journey's 1.17 s, at commit 466af92 of this script, and
  was dropped.)
* ``server``: one Hearth on SQLite with the portal's and the app's clients started and stopped
  (``browser_hearth``): what each portal module that now shares the session's one saves.

Prints the median of each in seconds, and new/old where there is an old. Needs the portal built (`make webapp`) and
/usr/bin/chromium.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# This script's folder is not a place to import from (bench/workflow.py is not `workflow`).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from playwright.sync_api import Browser, sync_playwright  # noqa: E402

from tests.fhir_server.auth.smart import make_user  # noqa: E402
from tests.fhir_server.webapp.browser import (  # noqa: E402
    CHROMIUM,
    browser_hearth,
    sign_in,
)
from tests.servers import RunningServer  # noqa: E402
from tests.workflow.conftest import Fhir, person, ref  # noqa: E402

LAUNCH = {"executable_path": CHROMIUM, "headless": True, "args": ["--no-sandbox"]}


def launched_per_test(root: str) -> float:
    # The other Playwright (the session's) marks its loop as this thread's running one between
    # its calls; a second one starts only without that mark (tests/conftest.py does the same).
    session_loop = asyncio._get_running_loop()
    asyncio._set_running_loop(None)
    try:
        start = time.perf_counter()
        with sync_playwright() as p:
            browser = p.chromium.launch(**LAUNCH)
            browser.new_context().new_page().goto(f"{root}/app/")
            browser.close()
        return time.perf_counter() - start
    finally:
        asyncio._set_running_loop(session_loop)


def context_per_test(browser: Browser, root: str) -> float:
    start = time.perf_counter()
    context = browser.new_context()
    context.new_page().goto(f"{root}/app/")
    context.close()
    return time.perf_counter() - start


def patient_sign_in(browser: Browser, server: RunningServer, operator: Fhir) -> float:
    me = person(operator, "Patient", f"Bench{uuid.uuid4().hex[:6]}")
    user = make_user(server, "patient", ref(me))
    context = browser.new_context()
    page = context.new_page()
    start = time.perf_counter()
    sign_in(page, server.root, user)
    took = time.perf_counter() - start
    context.close()
    return took


def server_start_stop() -> float:
    start = time.perf_counter()
    with browser_hearth(Path(tempfile.mkdtemp(prefix="hearth-bench-"))):
        pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {k: [] for k in ("launch", "context", "sign-in")}
    servers: list[float] = []
    with browser_hearth(Path(tempfile.mkdtemp(prefix="hearth-bench-"))) as server:
        operator = Fhir(server.fhir, server.headers)
        with sync_playwright() as p:
            browser = p.chromium.launch(**LAUNCH)
            patient_sign_in(browser, server, operator)  # warm
            for n in range(args.rounds):
                order = (False, True) if n % 2 else (True, False)
                times["sign-in"].append(patient_sign_in(browser, server, operator))
                for old in order:
                    if old:
                        # the session's browser idles while a test launches its own
                        times["launch"].append(launched_per_test(server.root))
                    else:
                        times["context"].append(context_per_test(browser, server.root))
            browser.close()
        operator.close()
    for _ in range(args.rounds):
        servers.append(server_start_stop())
    median = {k: statistics.median(v) for k, v in times.items()}
    print(f"rounds: {args.rounds}")
    print(
        f"browser per test: launched {median['launch']:.2f} s, "
        f"new context {median['context']:.2f} s, new/old {median['context'] / median['launch']:.2f}"
    )
    print(f"patient sign-in, whole journey: {median['sign-in']:.2f} s")
    print(
        f"server start + stop (saved per module sharing the session's): {statistics.median(servers):.2f} s"
    )


if __name__ == "__main__":
    main()
