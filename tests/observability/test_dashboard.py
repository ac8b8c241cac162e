"""The staff dashboard: its data endpoint, the quantile it charts, and the page itself in a
real headless Chromium (Debian's chromium + chromium-driver, driven by Selenium) after real
invocations."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.test import Client
from django.test.testcases import LiveServerThread

from pygigo.django_site.dashboard.series import quantile
from tests.conftest import missing, wait_until
from tests.django_site import functions as site_functions

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def require_chromium() -> None:
    """Skip (locally) or fail (CI) without Debian's chromium and chromium-driver."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        missing(
            f"{CHROMIUM} or {CHROMEDRIVER} missing; install them: apt-get install -y chromium chromium-driver"
        )


@pytest.fixture
def staff_user() -> Iterator[Any]:
    user = get_user_model().objects.create_user("dash-staff", password="dash-pass-123", is_staff=True)
    yield user
    user.delete()


def test_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    buckets = {0.1: 50.0, 0.5: 90.0, 1.0: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.1)
    assert quantile(0.7, buckets) == pytest.approx(0.3)  # 20 of the 40 between 0.1 and 0.5
    assert quantile(0.95, buckets) == pytest.approx(0.75)
    assert quantile(0.5, {float("inf"): 0.0}) is None


def test_dashboard_is_for_staff_only(staff_user: Any, broker: object) -> None:
    assert Client().get("/admin/pygigo/invocation/dashboard/data/").status_code == 302  # to the login page
    client = Client()
    client.force_login(staff_user)
    body = client.get("/admin/pygigo/invocation/dashboard/data/").json()
    assert set(body) == {"metrics_enabled", "series", "queues", "workers", "scheduler", "recent_failures"}
    assert client.get("/admin/pygigo/invocation/dashboard/").status_code == 200


@pytest.fixture
def live_server() -> Iterator[str]:
    """The site (static files included) served from a thread of this process, so it shares
    the broker, the in-process worker and the metrics."""
    server = LiveServerThread("127.0.0.1", StaticFilesHandler, port=0)
    server.daemon = True
    server.start()
    server.is_ready.wait()
    if server.error:
        raise server.error
    yield f"http://127.0.0.1:{server.port}"
    server.terminate()


@pytest.fixture
def chromium() -> Iterator[Any]:
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1300"):
        options.add_argument(argument)
    # An explicit driver path: Selenium Manager never downloads anything.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


@pytest.mark.slow
def test_dashboard_charts_real_invocations_in_headless_chromium(
    metrics_on: None,
    monkeypatch: pytest.MonkeyPatch,
    broker: object,
    worker: dramatiq.Worker,
    staff_user: Any,
    live_server: str,
    chromium: Any,
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.by import By

    monkeypatch.setenv("PYGIGO_DASHBOARD_POLL_S", "0.3")
    chromium.get(f"{live_server}/admin/login/?next=/admin/pygigo/invocation/dashboard/")
    chromium.find_element(By.ID, "id_username").send_keys("dash-staff")
    chromium.find_element(By.ID, "id_password").send_keys("dash-pass-123")
    chromium.find_element(By.CSS_SELECTOR, "input[type=submit]").click()

    def js(script: str, *args: Any) -> Any:
        return chromium.execute_script(script, *args)

    wait_until(lambda: (js("return window.pygigoDashboard && window.pygigoDashboard.polls") or 0) >= 1)

    # Real invocations while the page is open: it picks them up without a reload.
    client = Client()
    client.force_login(staff_user)
    for n in range(8):
        answered = client.post(
            "/fn/fe_echo", data=f"call {n}", content_type="text/plain", headers={"Prefer": "wait=10"}
        )
        assert answered.status_code == 201
    failed = client.post(
        "/fn/fe_fails_once", data=b'["k"]', content_type="application/json", headers={"Prefer": "wait=10"}
    )
    assert failed.status_code == 502
    failed_id = failed.json()["invocation"]["id"]

    def series_total(chart: str, label: str) -> float:
        values = js(
            "const c = window.pygigoDashboard.charts[arguments[0]];"
            "const i = c ? c.labels.indexOf(arguments[1]) : -1;"
            "return i < 0 ? [] : c.data[i + 1];",
            chart,
            label,
        )
        return sum(value or 0 for value in values)

    wait_until(lambda: series_total("throughput", "fe_echo") > 0, what="fe_echo's throughput charted")
    wait_until(lambda: series_total("failures", "fe_fails_once") == 1, what="the failure charted")
    # Read through JS in one call: the table is redrawn on every poll.
    link = f"#pg-failures a[href*='{failed_id}']"
    wait_until(
        lambda: js("return document.querySelector(arguments[0]) !== null", link), what="the failure linked"
    )
    runtime_points = js("return window.pygigoDashboard.charts.runtime.data[1].filter(v => v !== null).length")
    assert runtime_points >= 1
    assert series_total("depth", site_functions.QUEUE) == 0  # drained: the line sits at zero
    # The chart was drawn: its canvas has coloured pixels (the series lines and axes).
    painted = js(
        "const canvas = document.querySelector('#pg-chart-throughput canvas');"
        "const ctx = canvas.getContext('2d');"
        "const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;"
        "let n = 0; for (let i = 3; i < px.length; i += 4) if (px[i] > 0) n++; return n;"
    )
    assert painted > 1000
    assert not chromium.find_element(By.ID, "pg-error").is_displayed()  # every poll succeeded
    workers_text = js("return document.getElementById('pg-workers').textContent")
    assert str(os.getpid()) in workers_text  # the in-process worker's heartbeat
    href = js("const a = document.querySelector(arguments[0]); return a && a.href;", link)
    assert href.endswith(f"/admin/pygigo/invocation/{failed_id}/change/")

    screenshot = tmp_path / "dashboard.png"
    chromium.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
