"""The web dashboard (web/), served by Envoy, driven in headless Chromium against a real
server: sign in with a token, the weekly distance chart drawn from real imports, recent
activities with their age grades, one activity's route and heart rate, a file dropped in
and its import's progress bar reaching 100 %, then a screenshot that is not blank.

Chromium is Debian's `chromium` (.ci/run installs it); without it this test is skipped
locally and fails in CI, like Envoy (tests/gateway_flow.py).
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chromium import Browser, chromium_binary, distinct_colours, png_pixels
from tests.gateway_flow import running_envoy
from tests.support import ADMIN_TOKEN, ServerThread, make_settings, real_fixture

# Real recordings (../shared/fixtures/real): two runs seeded through the API, two more in
# the archive dropped onto the page.
SEEDED = ("gpx/run_garmin-connect_hr-cad.gpx", "tcx/run_forerunner410_hr.tcx")
DROPPED = ("fit/run_fenix2_hr-cad-temp.fit", "fit/run_fenix5_hr-cad_short.fit")


@dataclass
class Site:
    url: str
    athlete: str
    token: str
    activities: list[dict[str, Any]]


def _import(client: httpx.Client, athlete: str, path: Path) -> None:
    job = client.post(
        f"/v1/{athlete}/activities:upload",
        params={"file_name": path.name},
        content=path.read_bytes(),
        headers={"content-type": "application/octet-stream"},
    )
    assert job.status_code == 200, job.text
    last: dict[str, Any] = {}
    with client.stream("GET", f"/v1/{job.json()['name']}:watch") as events:
        for line in events.iter_lines():
            if line.strip():
                last = json.loads(line)
    assert last.get("state") == "JOB_STATE_SUCCEEDED", last


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    chromium_binary()  # skip early, before starting anything
    seeded = [real_fixture(relative) for relative in SEEDED]
    tmp = tmp_path_factory.mktemp("dashboard")
    with (
        ServerThread(make_settings(tmp / "data", None)) as server,
        running_envoy(server.address, tmp) as url,
    ):
        admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=url, headers=admin, timeout=60) as client:
            athlete = client.post(
                "/v1/athletes",
                json={
                    "displayName": "Dash Runner",
                    "timeZone": "Europe/London",
                    "birthDate": {"year": 1980, "month": 5, "day": 17},
                    "sex": "SEX_FEMALE",
                },
            ).json()["name"]
            token = client.post(
                f"/v1/{athlete}/accessTokens", json={"displayName": "dashboard test"}
            ).json()["token"]
            for path in seeded:
                _import(client, athlete, path)
            activities = client.get(
                f"/v1/{athlete}/activities", params={"descending": "true"}
            ).json()["activities"]
        assert len(activities) == len(SEEDED)
        yield Site(url, athlete, token, activities)


def test_the_page_and_its_files_are_served_by_envoy(site: Site) -> None:
    root = httpx.get(f"{site.url}/")
    assert root.status_code in (301, 302), root.text
    assert root.headers["location"].endswith("/dashboard/")
    page = httpx.get(f"{site.url}/dashboard/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    for path, kind in [
        ("app.js", "text/javascript"),
        ("app.css", "text/css"),
        ("vendor/chart.umd.js", "text/javascript"),
    ]:
        response = httpx.get(f"{site.url}/dashboard/{path}")
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith(kind), path
        assert len(response.content) > 1000, path
    # The API next to it is untouched.
    assert httpx.get(f"{site.url}/v1/athletes").status_code == 401
    assert httpx.get(f"{site.url}/dashboard/nothing.js").status_code == 404


def test_dashboard_in_headless_chromium(site: Site, tmp_path: Path) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for relative in DROPPED:
            path = real_fixture(relative)
            zipped.writestr(f"export/activities/{path.name}", path.read_bytes())
    newest = site.activities[0]

    with Browser(tmp_path / "profile") as browser:
        browser.navigate(f"{site.url}/dashboard/")
        browser.wait_for("!!window.stride && !document.querySelector('#sign-in').hidden")

        # A wrong token: refused, said so, still on the sign-in form.
        browser.evaluate(
            """(() => {
              document.querySelector('#token').value = 'stride_at_wrong';
              document.querySelector('#sign-in').requestSubmit();
            })()"""
        )
        refused = browser.wait_for(
            "(e => !e.hidden && e.textContent)(document.querySelector('#error'))",
            what="the error banner",
        )
        assert refused
        assert browser.evaluate("document.querySelector('#sign-in').offsetParent !== null")

        # Sign in with the athlete's own token and id, as a person would.
        browser.evaluate(
            f"""(() => {{
              document.querySelector('#token').value = {json.dumps(site.token)};
              document.querySelector('#athlete-id').value = {json.dumps(site.athlete)};
              document.querySelector('#sign-in').requestSubmit();
            }})()"""
        )
        browser.wait_for(
            "document.querySelectorAll('#activities tr').length === 2", what="the activity list"
        )
        assert browser.evaluate("document.querySelector('#athlete-name').textContent") == (
            "Dash Runner"
        )
        assert browser.evaluate("sessionStorage.getItem('stride.token')") == site.token
        # The form is gone (laid out nowhere), the dashboard is shown.
        assert browser.evaluate("document.querySelector('#sign-in').offsetParent === null")
        assert browser.evaluate("document.querySelector('#weekly').offsetParent !== null")

        # The weekly chart: twelve weeks up to the newest activity, its week's bar that
        # run's distance (from the server's training summary), drawn on the canvas.
        chart = browser.wait_for(
            """(() => {
              const chart = Chart.getChart('weekly-chart');
              return chart && chart.data.datasets[0].data.length
                ? {labels: chart.data.labels, data: chart.data.datasets[0].data} : null;
            })()""",
            what="the weekly chart",
        )
        assert len(chart["data"]) == 12
        assert chart["data"][-1] == pytest.approx(newest["distanceMeters"] / 1000, abs=0.01)
        assert chart["data"][-1] > 1
        painted = browser.wait_for(
            """(() => {
              const canvas = document.querySelector('#weekly-chart');
              const pixels = canvas.getContext('2d')
                .getImageData(0, 0, canvas.width, canvas.height).data;
              let bar = 0;  // the bars' colour, #e4572e
              for (let i = 0; i < pixels.length; i += 4) {
                if (pixels[i] === 0xe4 && pixels[i + 1] === 0x57 && pixels[i + 2] === 0x2e) bar++;
              }
              return bar > 200 ? bar : 0;
            })()""",
            what="bars painted on the canvas",
        )
        assert painted > 200

        # Recent activities, newest first, with their age grades.
        rows = browser.evaluate(
            """[...document.querySelectorAll('#activities tr')].map(row => ({
                 name: row.dataset.name,
                 grade: row.querySelector('.age-grade').textContent}))"""
        )
        assert [row["name"] for row in rows] == [a["name"] for a in site.activities]
        for row, activity in zip(rows, site.activities, strict=True):
            assert "ageGrade" in activity, activity["title"]
            assert row["grade"] == f"{activity['ageGrade']['ageGradedPercent']:.1f} %"

        # One activity: its route (an SVG polyline of its GPS points) and heart rate.
        browser.evaluate("document.querySelector('#activities tr').click()")
        route = browser.wait_for(
            """(() => {
              const line = document.querySelector('#route polyline');
              return line && Number(document.querySelector('#route').dataset.points) > 100
                && Number(document.querySelector('#hr-chart').dataset.points) > 100
                ? line.getAttribute('points').split(' ').length : 0;
            })()""",
            what="the route and heart rate",
        )
        assert route > 100
        assert "bpm" in browser.evaluate("document.querySelector('#hr-caption').textContent")

        # Drop an archive onto the page: uploaded, its job watched to the end, the bar
        # moving forward only (every value it shows is recorded).
        browser.evaluate(
            """(() => {
              window.seenProgress = [];
              new MutationObserver(() => {
                const bar = document.querySelector('#jobs .bar');
                const value = bar && Number(bar.getAttribute('aria-valuenow'));
                if (bar && window.seenProgress.at(-1) !== value) window.seenProgress.push(value);
              }).observe(document.querySelector('#jobs'),
                         {subtree: true, childList: true, attributes: true});
            })()"""
        )
        encoded = base64.b64encode(archive.getvalue()).decode()
        browser.evaluate(
            f"""(() => {{
              const bytes = Uint8Array.from(atob('{encoded}'), c => c.charCodeAt(0));
              const transfer = new DataTransfer();
              transfer.items.add(new File([bytes], 'export.zip', {{type: 'application/zip'}}));
              const drop = document.querySelector('#drop');
              const init = {{dataTransfer: transfer, bubbles: true, cancelable: true}};
              drop.dispatchEvent(new DragEvent('dragover', init));
              drop.dispatchEvent(new DragEvent('drop', init));
            }})()"""
        )  # fmt: skip
        seen = browser.wait_for(
            """(() => {
              const job = document.querySelector('#jobs .job');
              return job && job.dataset.state === 'JOB_STATE_SUCCEEDED' && {
                percent: job.querySelector('.bar').getAttribute('aria-valuenow'),
                width: job.querySelector('.fill').style.width,
                text: job.querySelector('.job-text').textContent,
                file: job.querySelector('.file').textContent};
            })()""",
            timeout=45,
            what="the import to finish",
        )
        assert seen["file"] == "export.zip"
        progress = browser.evaluate("window.seenProgress")
        assert progress == sorted(progress), progress
        assert progress[-1] == 100, progress
        assert seen["percent"] == "100"
        assert seen["width"] == "100%"
        assert seen["text"].startswith("100 % · 2 / 2 files · 2 created"), seen["text"]
        # The list and chart are reloaded with the imported runs.
        browser.wait_for(
            "document.querySelectorAll('#activities tr').length === 4", what="the new activities"
        )
        assert browser.console_errors() == []

        browser.evaluate("window.scrollTo(0, 0)")
        browser.wait_for("document.getAnimations().length === 0", what="transitions to end")
        png = browser.screenshot(scale=0.5)
        # The admin token alone: the athletes to pick from, the first one shown.
        browser.evaluate(
            f"""(() => {{
              document.querySelector('#sign-out').click();
              document.querySelector('#token').value = {json.dumps(ADMIN_TOKEN)};
              document.querySelector('#athlete-id').value = '';
              document.querySelector('#sign-in').requestSubmit();
            }})()"""
        )
        picked = browser.wait_for(
            """(() => {
              const picker = document.querySelector('#athlete-picker');
              return !picker.hidden && document.querySelectorAll('#activities tr').length === 4
                && [...picker.options].map(o => [o.value, o.textContent]);
            })()""",
            what="the admin's athlete picker",
        )
        assert picked == [[site.athlete, "Dash Runner"]]
    shot = tmp_path / "dashboard.png"
    shot.write_bytes(png)
    width, height, _ = png_pixels(png)
    assert (width, height) == (640, 700)
    # Not blank: a page of text, a chart and a progress bar has many colours.
    assert distinct_colours(png) > 100, f"a blank screenshot? {shot}"
