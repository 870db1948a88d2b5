"""The hub's web pages in headless Chromium, served by a real uvicorn; every
user signs in through the real login page."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.agent import EdgeAgent
from tests.browser.conftest import PASSWORD, LiveHub
from tests.integration.conftest import xray  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

@pytest.fixture
def hub_url(live_hub: LiveHub) -> str:
    """The hub of tests/browser/conftest.py, with its dispatcher and ER doctors."""
    return live_hub.url


def _wait(predicate, timeout: float = 15.0) -> bool:  # type: ignore[no-untyped-def]
    from tests.services import wait_until

    return wait_until(predicate, timeout=timeout)


@pytest.fixture
def edge(ambulance: EdgeAgent) -> EdgeAgent:
    """An ambulance downtown, near Massachusetts General Hospital."""
    return ambulance


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    page = browser.new_page()
    yield page
    page.close()


@pytest.fixture
def doctor_page(browser):  # type: ignore[no-untyped-def]
    """A second browser (its own cookies) for the ER doctor."""
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def _sign_in(page, hub_url: str, username: str, password: str = PASSWORD,
             then: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Sign in through the login page (``then``: open that page first and be sent to login)."""
    page.goto(f"{hub_url}{then or '/login'}")
    page.wait_for_url(f"{hub_url}/login**")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login button[type=submit]")
    if password == PASSWORD:
        page.wait_for_selector("#signed-in")
        assert username in page.inner_text("#signed-in")


def _nearest_er_console(page, doctor_page, hub_url: str, case_id: str):  # type: ignore[no-untyped-def]
    """Find the case on the dispatch board, then sign in as its first ER's doctor."""
    _sign_in(page, hub_url, "dispatcher")
    row = page.locator(f"#cases tr[data-case='{case_id}']")
    row.wait_for(timeout=10_000)
    nearest = row.locator("a.offer-link").first.inner_text()
    _sign_in(doctor_page, hub_url, f"er-{nearest}")
    doctor_page.wait_for_url(f"{hub_url}/er/{nearest}")
    offer = doctor_page.locator(f"#open-offers tr[data-case='{case_id}']")
    offer.wait_for(timeout=10_000)
    return nearest, row, offer


def test_er_doctor_accepts_from_the_console_and_the_ambulance_is_told(
        page, doctor_page, hub_url: str, edge: EdgeAgent,
        xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    record = edge.submit(xray)
    _sign_in(page, hub_url, "dispatcher")
    row = page.locator(f"#cases tr[data-case='{record.case_id}']")
    row.wait_for(timeout=10_000)
    assert "AI result, not for clinical use" in page.inner_text(".notice")
    assert "placeholder model, not a diagnosis" in row.inner_text()

    nearest, _, offer = _nearest_er_console(page, doctor_page, hub_url, record.case_id)
    assert doctor_page.locator(f"img[alt='X-ray thumbnail of case {record.case_id}']").evaluate(
        "img => img.complete && img.naturalWidth > 0")
    offer.locator("button.accept").click()
    doctor_page.wait_for_url(f"{hub_url}/er/{nearest}")
    closed = doctor_page.locator(f"#closed-offers tr[data-case='{record.case_id}']")
    assert closed.locator(".state").inner_text() == "accepted"
    assert f"er-{nearest}" in closed.inner_text()  # decided by the signed-in doctor

    done = edge.wait_for_decision(record.case_id, timeout=10)
    assert done.decision is not None and done.decision.hospital_id == nearest
    page.goto(f"{hub_url}/")
    status = page.locator(f"#cases tr[data-case='{record.case_id}'] .badge")
    assert status.inner_text() == "accepted"
    page.screenshot(path=str(Path(xray).parent / "dispatch.png"), full_page=True)


def test_a_decline_needs_a_reason_and_then_moves_the_case_on(
        page, doctor_page, hub_url: str, edge: EdgeAgent,
        xray: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    record = edge.submit(xray)
    nearest, _, offer = _nearest_er_console(page, doctor_page, hub_url, record.case_id)
    offer.locator("button.decline").click()
    assert "Give a reason to decline" in doctor_page.locator("#error").inner_text()
    offer = doctor_page.locator(f"#open-offers tr[data-case='{record.case_id}']")
    offer.locator("input[name=reason]").fill("CT out of order")
    offer.locator("button.decline").click()
    doctor_page.wait_for_url(f"{hub_url}/er/{nearest}")
    closed = doctor_page.locator(f"#closed-offers tr[data-case='{record.case_id}']")
    assert "declined" in closed.inner_text() and "CT out of order" in closed.inner_text()


def test_an_er_sets_its_capacity_and_dispatch_sees_it(
        page, doctor_page, hub_url: str) -> None:  # type: ignore[no-untyped-def]
    _sign_in(doctor_page, hub_url, "er-bos-bmc", then="/er/bos-bmc")
    doctor_page.wait_for_url(f"{hub_url}/er/bos-bmc")
    form = doctor_page.locator("#capacity")
    form.locator("input[name=er_beds_free]").fill("0")
    form.locator("input[name=icu_beds_free]").fill("0")
    form.locator("input[name=accepting]").uncheck()
    form.locator("button").click()
    doctor_page.wait_for_url(f"{hub_url}/er/bos-bmc")
    _sign_in(page, hub_url, "dispatcher")
    row = page.locator("#hospitals tr[data-hospital='bos-bmc']")
    assert "0 / 7" in row.inner_text() and "NO" in row.inner_text()
    assert "not current" in page.locator("#hospitals tr[data-hospital='bos-mgh']").inner_text()
    # a dispatcher sees an ER's console read-only
    page.goto(f"{hub_url}/er/bos-bmc")
    assert page.locator("#capacity").count() == 0 and page.locator("#capacity-view").is_visible()


def test_sign_in_wrong_password_other_er_and_sign_out(
        page, hub_url: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{hub_url}/")
    page.wait_for_url(f"{hub_url}/login?next=%2F")
    _sign_in(page, hub_url, "er-bos-mgh", password="not the password")
    assert "Wrong username or password" in page.inner_text("#error")
    assert page.locator("#signed-in").count() == 0

    _sign_in(page, hub_url, "er-bos-mgh", then="/er/bos-mgh")
    assert page.url == f"{hub_url}/er/bos-mgh"
    assert "dispatch" not in page.inner_text("header")  # no dispatch board for an ER doctor
    page.goto(f"{hub_url}/")
    assert page.url == f"{hub_url}/er/bos-mgh"
    other = page.goto(f"{hub_url}/er/bos-bmc")
    assert other is not None and other.status == 404  # another ER's console does not exist

    page.goto(f"{hub_url}/er/bos-mgh")
    page.click("#sign-out")
    page.wait_for_url(f"{hub_url}/login")
    page.goto(f"{hub_url}/er/bos-mgh")
    page.wait_for_url(f"{hub_url}/login?next=%2Fer%2Fbos-mgh")
