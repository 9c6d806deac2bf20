"""The Prefect UI as the operator's console, in a real browser: Playwright drives Debian's
Chromium over the UI of the embedded server that `tidewater serve` starts (PREFECT_API_URL
unset, so the UI must call its own API on whatever port it got), after a short `tidewater
demo`. Each test saves a screenshot under docs/screenshots/ (overwritten on every run)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
if CHROMIUM is None:
    pytest.skip(
        "the browser tests need Chromium (/usr/bin/chromium or `chromium` on PATH; Debian: "
        "apt-get install chromium)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="the browser tests need playwright (pip install 'playwright>=1.55'; it drives the "
    "system Chromium, no `playwright install`)",
)
expect = sync_api.expect

TIDEWATER = str(Path(sys.executable).with_name("tidewater"))
SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Without the background-networking flags Chromium's own connections are refused here.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1400, "height": 900}
MAX_SHOT_HEIGHT = 1800  # keeps the PNGs under ~400 KB
WAIT_MS = 60_000  # the machine is shared: generous waits, never sleeps
# What the UI shows when it cannot reach its API (v1: a toast; v2: a full-page notice).
NO_API = ("Can't connect to Server API", "Unable to connect to Prefect server")

# The smallest demo with a day of rejects, a quarantine day and a drifted day.
START, DAYS, DRIFT_DAY, TRAIN_DAYS = date(2024, 1, 1), 4, 4, 2


def _demo_days() -> tuple[str, str]:
    """(the day the wrong-types file lands on, the first drifted day) of this demo."""
    from datasets.adult import WRONG_TYPES_FILE, landing_plan

    plan = landing_plan(START, DAYS, drift_from=START + timedelta(days=DRIFT_DAY - 1))
    quarantine = next(f.ds for f in plan if f.filename == WRONG_TYPES_FILE)
    drifted = min(f.ds for f in plan if f.is_drift)
    return quarantine.isoformat(), drifted.isoformat()


QUARANTINE_DS, DRIFT_DS = _demo_days()


@dataclass
class Served:
    """What `tidewater serve` and `tidewater demo` left running, by address."""

    ui_url: str  # as `serve` printed it
    api_url: str
    reports_url: str
    app_url: str  # where the default UI lives (Prefect 3.9: `{ui_url}/v2`)

    def _post(self, path: str, body: dict) -> list[dict]:
        request = urllib.request.Request(
            f"{self.api_url}{path}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)

    def flow_run_id(self, name: str) -> str:
        runs = self._post("/flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
        assert len(runs) == 1, f"expected one flow run named {name}, found {len(runs)}"
        return runs[0]["id"]

    def artifact(self, key: str) -> dict:
        found = self._post(
            "/artifacts/filter",
            {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1},
        )
        assert found, f"no artifact {key}"
        return found[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    """`tidewater serve` (its own embedded Prefect server, Dask cluster and reports server)
    and a short `tidewater demo` on it, in a fresh TIDEWATER_HOME; stopped at the end."""
    home = tmp_path_factory.mktemp("ui-browser") / "home"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TIDEWATER_") and k != "PREFECT_API_URL"
    }
    env |= {"TIDEWATER_HOME": str(home), "TIDEWATER_DASK_WORKERS": "1", "COLUMNS": "200"}

    def tidewater(*args: str) -> str:
        done = subprocess.run(
            [TIDEWATER, *args], env=env, capture_output=True, text=True, timeout=480
        )
        assert done.returncode == 0, (
            f"tidewater {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done.stdout

    try:
        # No worker: nothing here runs through a deployment.
        printed = tidewater("serve", "--no-worker")
        demo = ("--days", str(DAYS), "--drift-day", str(DRIFT_DAY), "--train-days", str(TRAIN_DAYS))
        tidewater("demo", *demo)
        server = json.loads((home / "prefect" / "server.json").read_text())
        ui_url = re.search(r"Prefect UI\W+(http://\S+?)\s", printed)
        assert ui_url, f"`serve` printed no Prefect UI address:\n{printed}"
        assert ui_url[1] == server["ui_url"]
        reports = json.loads((home / "serve" / "reports.json").read_text())["url"]
        with urllib.request.urlopen(f"{ui_url[1]}/ui-settings", timeout=30) as response:
            ui_settings = json.load(response)
        assert ui_settings["api_url"] == server["api_url"]
        app_url = ui_url[1] + ui_settings[f"{ui_settings['default_ui']}_base_url"].rstrip("/")
        yield Served(ui_url[1], server["api_url"], reports, app_url)
    finally:
        subprocess.run([TIDEWATER, "serve", "--stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium, headless, with a fresh profile, driven by Playwright."""
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(WAIT_MS)
        context.set_default_navigation_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@dataclass
class UI:
    """One browser tab on the served UI, recording which API addresses it called."""

    page: sync_api.Page
    served: Served
    api_calls: list[tuple[int, str]] = field(default_factory=list)

    def open(self, path: str) -> None:
        self.page.goto(self.served.app_url + path)

    def shoot(self, name: str) -> Path:
        """A screenshot of the whole page (up to MAX_SHOT_HEIGHT) as docs/screenshots/name:
        the viewport grows to the page's height so that the sidebar spans it too."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        height = self.page.evaluate("document.documentElement.scrollHeight")
        self.page.set_viewport_size(
            {**VIEWPORT, "height": min(max(height, VIEWPORT["height"]), MAX_SHOT_HEIGHT)}
        )
        try:
            self.page.screenshot(path=SHOTS / name, animations="disabled")
        finally:
            self.page.set_viewport_size(VIEWPORT)
        return SHOTS / name

    def assert_reaches_its_api(self) -> None:
        """No 'cannot connect' notice, and the API calls went to this server's own API."""
        for notice in NO_API:
            expect(self.page.get_by_text(notice)).to_have_count(0)
        api = [url for _, url in self.api_calls]
        assert any(
            status < 400 and url.startswith(self.served.api_url + "/")
            for status, url in self.api_calls
        ), f"the UI made no successful call to {self.served.api_url}: {api}"
        elsewhere = [url for url in api if not url.startswith(self.served.api_url + "/")]
        assert not elsewhere, f"the UI called another API than its own: {elsewhere}"


@pytest.fixture
def ui(browser, served) -> Iterator[UI]:
    page = browser.new_page()
    tab = UI(page=page, served=served)
    page.on(
        "response",
        lambda response: (
            "/api/" in response.url and tab.api_calls.append((response.status, response.url))
        ),
    )
    try:
        yield tab
    finally:
        page.close()


def _markdown(ui: UI):
    """The rendered markdown of the artifact page."""
    return ui.page.get_by_test_id("markdown-display")


def test_runs_page_lists_the_demo_runs(ui):
    # The operator opens the address `serve` printed and goes to Runs.
    ui.page.goto(ui.served.ui_url)
    ui.page.wait_for_url(f"{ui.served.app_url}/**")
    ui.page.get_by_role("link", name="Runs", exact=True).click()
    for day in range(DAYS):
        ds = (START + timedelta(days=day)).isoformat()
        expect(ui.page.get_by_role("link", name=f"pipeline-adult-{ds}", exact=True)).to_be_visible()
    expect(
        ui.page.get_by_role("link", name=f"monitor-adult-{DRIFT_DS}", exact=True)
    ).to_be_visible()
    ui.assert_reaches_its_api()
    ui.shoot("runs.png")


def test_pipeline_run_shows_subflows_and_day_summary(ui):
    ds = QUARANTINE_DS
    ui.open(f"/runs/flow-run/{ui.served.flow_run_id(f'pipeline-adult-{ds}')}")
    expect(ui.page.get_by_text(f"pipeline-adult-{ds}", exact=True).first).to_be_visible()
    ui.page.get_by_role("tab", name="Subflow Runs").click()
    for stage in ("ingest", "validate", "score", "monitor"):
        expect(ui.page.get_by_role("link", name=f"{stage}-adult-{ds}", exact=True)).to_be_visible()
    ui.assert_reaches_its_api()
    ui.shoot("pipeline-run.png")

    ui.page.get_by_role("tab", name="Artifacts").click()
    ui.page.get_by_text(f"summary-adult-{ds}", exact=True).click()
    summary = _markdown(ui)
    expect(summary.get_by_role("heading", name=f"Day summary: adult {ds}")).to_be_visible()
    expect(summary.get_by_role("heading", name="Row accounting")).to_be_visible()
    stages = summary.locator("table").first.locator("tbody tr td:first-child")
    expect(stages).to_contain_text(["ingest", "validate", "score", "monitor"])
    ui.shoot("summary-artifact.png")


def test_validation_artifact_of_the_quarantine_day(ui):
    from datasets.adult import WRONG_TYPE_BAD_ROWS

    artifact = ui.served.artifact(f"validation-adult-{QUARANTINE_DS}")
    ui.open(f"/artifacts/artifact/{artifact['id']}")
    validation = _markdown(ui)
    expect(
        validation.get_by_role("heading", name=f"Validation: adult {QUARANTINE_DS}")
    ).to_be_visible()
    expect(validation).to_contain_text(f"quarantined: {WRONG_TYPE_BAD_ROWS}")
    failed = validation.locator("h2:has-text('Failed checks') + table tbody tr")
    expect(failed.filter(has_text="sex: isin")).to_have_count(1)
    assert failed.count() >= 5
    # It belongs to the validate subflow run of that day.
    expect(ui.page.get_by_role("link", name=f"validate-adult-{QUARANTINE_DS}")).to_be_visible()
    ui.assert_reaches_its_api()
    ui.shoot("validation-artifact.png")


def test_monitoring_artifact_and_its_report_links(ui):
    artifact = ui.served.artifact(f"monitor-adult-{DRIFT_DS}")
    ui.open(f"/artifacts/artifact/{artifact['id']}")
    drift = _markdown(ui)
    expect(drift.get_by_role("heading", name=f"Monitoring: adult {DRIFT_DS}")).to_be_visible()
    # the first drifted day: the retrain policy's hysteresis makes it a warning
    expect(drift.get_by_text("Verdict: WARN")).to_be_visible()
    run_link = ui.page.locator("a[href*='/runs/flow-run/']", has_text=f"monitor-adult-{DRIFT_DS}")
    expect(run_link).to_be_visible()  # the artifact names the run that made it
    ui.assert_reaches_its_api()
    ui.shoot("drift-artifact.png")

    link = drift.get_by_role("link", name="Day report")
    href = link.get_attribute("href")
    assert href == f"{ui.served.reports_url}/adult/{DRIFT_DS}/monitor.html"
    with ui.page.expect_response(href) as report:
        link.click()
    assert report.value.status == 200
    ui.page.wait_for_url(href)
    expect(ui.page.get_by_role("heading", name="Decision: warn")).to_be_visible()
    ui.page.get_by_role("link", name="drift.html").click()
    # Evidently's report: how many columns drifted, then each column's test (age drifts)
    expect(ui.page.get_by_role("heading", name="Count of Drifted Columns: share")).to_be_visible()
    expect(ui.page.get_by_text("Drift in column 'age'")).to_be_visible()
    expect(ui.page.get_by_role("heading", name="Data drift detected.").first).to_be_visible()
    ui.shoot("report.png")
