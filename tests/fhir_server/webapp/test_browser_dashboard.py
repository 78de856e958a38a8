"""The programme dashboard of the portal (/app/portal/, staff area) in Debian chromium driven by
Playwright, against a Hearth on SQLite whose database `hearth db upgrade` gave the shipped
Measures: a doctor signs in (password + TOTP, user-level scopes), sees each figure drawn as a
chart with its numbers — the same as the MeasureReports the server answers — and the confusion
matrix as a table, downloads a MeasureReport as FHIR JSON; the page breaks no rule of the strict
CSP. Screenshots are kept under test-artefacts/webapp/."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from playwright.sync_api import expect

from tests.fhir_server.auth.smart import make_user
from tests.fhir_server.test_cli import hearth as hearth_cli
from tests.fhir_server.webapp.browser import (
    DESKTOP,
    PHONE,
    browser_hearth,
    fits,
    shot,
    sign_in,
    watch,
)
from tests.workflow.conftest import Fhir, person, ref
from tests.workflow.test_analytics_http import label, staff, walk

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def hearth(tmp_path_factory):  # type: ignore[no-untyped-def]

    def upgrade(url: str) -> None:
        up = hearth_cli("db", "upgrade", env={"HEARTH_DATABASE_URL": url})
        assert up.returncode == 0 and "Hearth's Measures: 6 stored" in up.stdout, (
            up.stdout + up.stderr
        )

    # Its own Hearth: the figures count every case on the server.
    with browser_hearth(tmp_path_factory.mktemp("dashboard"), upgrade) as running:
        yield running


def cases(fhir: Fhir) -> dict:
    tag = uuid.uuid4().hex[:6]
    org = fhir.create({"resourceType": "Organization", "name": f"Kibera clinic {tag}"})
    team: dict = {
        "doctor": ("doctor", ref(person(fhir, "Practitioner", f"Otieno{tag}"))),
        "ai": ("ai", ref(fhir.create({"resourceType": "Device", "status": "active"}))),
        "patients": [ref(person(fhir, "Patient", f"D{n}{tag}")) for n in range(6)],
    }
    cadre = staff(fhir, f"Wanjiru{tag}", {"organization": {"reference": ref(org)}})
    snomed_bcc = {"system": "http://snomed.info/sct", "code": "254701007"}
    walk(fhir, team, cadre, {"ai": ("mel", True), "doctor": label("mel")})
    walk(fhir, team, cadre, {"ai": ("nv", False), "doctor": label("nv")})
    walk(fhir, team, cadre, {"ai": ("nv", False), "doctor": snomed_bcc})
    walk(fhir, team, cadre, {"ai": (None, False), "doctor": label("bkl")})
    walk(fhir, team, None, {})
    for status, days in (("noshow", 1), ("fulfilled", 2), ("fulfilled", 3)):
        at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=days)
        fhir.create(
            {
                "resourceType": "Appointment",
                "status": status,
                "start": at.isoformat().replace("+00:00", "Z"),
                "end": (at + timedelta(minutes=20)).isoformat().replace("+00:00", "Z"),
                "participant": [
                    {"actor": {"reference": team["patients"][0]}, "status": "accepted"}
                ],
            }
        )
    return {"team": team, "org": org}


def server_report(server, measure: str) -> dict:  # type: ignore[no-untyped-def]
    end = datetime.now(UTC).date()
    resp = httpx.get(
        f"{server.fhir}/Measure/{measure}/$evaluate-measure",
        params={
            "periodStart": (end - timedelta(days=84)).isoformat(),
            "periodEnd": end.isoformat(),
        },
        headers=server.headers,
        timeout=60,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_doctor_reads_the_programme_dashboard(hearth, browser):
    operator = Fhir(hearth.fhir, hearth.headers)
    world = cases(operator)
    user = make_user(hearth, "doctor", world["team"]["doctor"][1])
    positivity = server_report(hearth, "screening-positivity")
    high = [g for g in positivity["group"] if g["code"]["coding"][0]["code"] == "high-risk"][0]
    assert {p["code"]["coding"][0]["code"]: p["count"] for p in high["population"]} == {
        "initial-population": 5,
        "denominator": 4,
        "numerator": 1,
    }
    errors: list[str] = []
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True)
    outside: list[str] = []
    page = watch(
        context.new_page(), errors, outside=outside, allowed=(hearth.root, "blob:", "data:")
    )
    sign_in(page, hearth.root, user, "staff")  # the doctor's whole sign-in journey
    expect(page.get_by_role("heading", name="Screening programme")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard")).to_have_attribute("aria-current", "page")

    volume = page.locator('[data-measure="screening-volume"]')
    expect(volume).to_contain_text("5 screenings started in this period.")
    positivity_fig = page.locator('[data-measure="screening-positivity"]')
    expect(positivity_fig).to_contain_text("25 % (1 of 4).")
    expect(page.locator('[data-measure="screening-uncertain"]')).to_contain_text("25 % (1 of 4).")
    expect(page.locator('[data-measure="appointment-no-show"]')).to_contain_text("33 % (1 of 3).")
    agreement = page.locator('[data-measure="ai-doctor-agreement"]')
    # Compared with a class: mel/mel, nv/nv, nv/bcc (the uncertain one is excluded).
    expect(agreement).to_contain_text("67 % (2 of 3).")
    expect(page.locator('[data-measure="screening-turnaround"]')).to_contain_text("Photo → AI")

    # The confusion matrix: rows the AI finding, columns the doctor's conclusion.
    matrix = agreement.get_by_role("table")
    cells = matrix.evaluate(
        """t => Object.fromEntries([...t.tBodies[0].rows].map(r => [r.cells[0].textContent,
            Object.fromEntries([...r.cells].slice(1).map((c, i) =>
                [t.tHead.rows[0].cells[i + 1].textContent, Number(c.textContent)]))]))"""
    )
    assert cells == {
        "mel": {"bcc": 0, "bkl": 0, "mel": 1, "nv": 0},
        "nv": {"bcc": 1, "bkl": 0, "mel": 0, "nv": 1},
        "uncertain": {"bcc": 0, "bkl": 1, "mel": 0, "nv": 0},
    }

    # Every chart is drawn: a canvas of its box's size with coloured pixels on it.
    charts = page.locator(".chart canvas")
    expect(charts).to_have_count(7)
    for n in range(7):
        drawn = charts.nth(n).evaluate(
            """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let k = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) k++;
                return c.width > 100 && c.height > 100 && k > 500; }"""
        )
        assert drawn, n
    # The site stacks by name, from the PractitionerRole's organization.
    volume.get_by_text("The numbers").first.click()
    expect(volume.get_by_role("columnheader", name=world["org"]["name"])).to_be_visible()
    shot(page, "dashboard-desktop")

    # Each figure is also its FHIR MeasureReport, downloaded as it came from the server.
    with page.expect_download() as info:
        positivity_fig.get_by_role("button", name="Download the MeasureReport").click()
    download = info.value
    assert download.suggested_filename == "MeasureReport-screening-positivity.json"
    got = json.loads(open(download.path(), encoding="utf-8").read())
    assert got["resourceType"] == "MeasureReport" and got["type"] == "summary"
    assert {k: v for k, v in got.items() if k != "date"} == {
        k: v for k, v in positivity.items() if k != "date"
    }

    # A narrower period: nothing before tomorrow... is nothing at all.
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    page.get_by_label("From", exact=True).fill(tomorrow)
    page.get_by_label("To", exact=True).fill(tomorrow)
    page.get_by_role("button", name="Show").click()
    expect(volume).to_contain_text("0 screenings started in this period.")

    page.set_viewport_size(PHONE)
    page.get_by_label("From", exact=True).fill(
        (datetime.now(UTC).date() - timedelta(days=7)).isoformat()
    )
    page.get_by_label("To", exact=True).fill(datetime.now(UTC).date().isoformat())
    page.get_by_role("button", name="Show").click()
    expect(volume).to_contain_text("5 screenings started in this period.")
    shot(page, "dashboard-phone")
    assert fits(page)
    assert not errors, errors
    assert not outside, outside
    operator.close()
