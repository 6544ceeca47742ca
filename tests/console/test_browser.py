"""Every console page in headless Chromium against a seeded server, with a screenshot of each.

One browser and one signed-in page serve the whole module (see ``conftest.py``); the waits are
Playwright's, for what the page shows, never sleeps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import HOSTILE_NAME, Seeded

try:
    from playwright.sync_api import expect
except ImportError:  # the fixtures skip (or fail under LABRIC_REQUIRE_BROWSER) with the reason
    expect = None


def _shot(page: Any, folder: Path, name: str) -> None:
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_sign_in_is_required(browser: Any, seeded: Seeded, screenshots: Path) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{seeded.server.origin}/console/files")
        assert page.url.startswith(f"{seeded.server.origin}/console/sign-in")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        _shot(page, screenshots, "00-sign-in")
        token = seeded.server.console_url.partition("token=")[2]
        page.fill("input[name=token]", "not the token")
        page.click("button[type=submit]")
        expect(page.locator(".error")).to_contain_text("not this server run's token")
        page.fill("input[name=token]", token)
        page.click("button[type=submit]")
        expect(page.get_by_role("heading", name="Files")).to_be_visible()
        assert page.url == f"{seeded.server.origin}/console/files"  # back where it was sent from
        assert "token" not in page.url
    finally:
        context.close()


def test_files_show_a_hostile_name_as_text(console: Any, seeded: Seeded, screenshots: Path) -> None:
    console.goto(f"{seeded.server.origin}/console/files")
    expect(console.get_by_role("link", name=HOSTILE_NAME)).to_be_visible()
    assert console.locator("img[src=x]").count() == 0
    _shot(console, screenshots, "01-files")
    console.get_by_role("link", name=HOSTILE_NAME).click()
    expect(console.get_by_role("heading", name=HOSTILE_NAME)).to_be_visible()
    # the CSV preview as a table
    expect(console.locator("main table th").first).to_have_text("well")
    expect(console.locator("main table td").first).to_have_text("A1")
    assert console.locator("img[src=x]").count() == 0
    assert console.dialogs == []
    _shot(console, screenshots, "02-file-csv")


def test_files_filter_and_image_preview(console: Any, seeded: Seeded, screenshots: Path) -> None:
    console.goto(f"{seeded.server.origin}/console/files")
    console.select_option("select[name=instrument]", seeded.ids["instrument"])
    console.fill("input[name=ext]", "png")
    console.click(".filters button")
    expect(console.locator("main tbody tr")).to_have_count(1)
    console.get_by_role("link", name="plate.png").click()
    image = console.locator("img.preview")
    expect(image).to_be_visible()
    assert console.evaluate("document.querySelector('img.preview').naturalWidth") == 24
    _shot(console, screenshots, "03-file-image")
    console.goto(f"{seeded.server.origin}/console/files?q=notes")
    expect(console.locator("main tbody tr")).to_have_count(1)


def test_datasets_rows_and_sql(console: Any, seeded: Seeded, screenshots: Path) -> None:
    console.goto(f"{seeded.server.origin}/console/datasets")
    expect(console.get_by_role("link", name="samples", exact=True)).to_be_visible()
    _shot(console, screenshots, "04-datasets")
    console.get_by_role("link", name="samples", exact=True).click()
    expect(console.locator("main tbody tr")).to_have_count(6)
    _shot(console, screenshots, "05-dataset-rows")
    console.goto(f"{seeded.server.origin}/console/datasets")
    console.fill("textarea[name=sql]", "SELECT strain, max(od600) AS top FROM samples GROUP BY 1")
    console.click(".sql button")
    expect(console.locator("main tbody tr")).to_have_count(2)
    expect(console.locator("main th").nth(1)).to_have_text("top")
    console.fill("textarea[name=sql]", "DELETE FROM samples")
    console.click(".sql button")
    expect(console.locator(".error")).to_be_visible()
    _shot(console, screenshots, "06-sql")


def test_a_job_runs_from_the_page_and_its_log_is_followed(
    console: Any, seeded: Seeded, screenshots: Path
) -> None:
    console.goto(f"{seeded.server.origin}/console/jobs")
    console.get_by_role("link", name="follow me").click()
    console.get_by_role("button", name="Run now").click()
    log = console.locator("#log")
    expect(log).to_contain_text("step 1: started")  # live, while the run is still going
    expect(console.locator("dd [data-status]")).to_have_text("running")
    _shot(console, screenshots, "07-run-live")
    seeded.gate.touch()
    expect(log).to_contain_text("step 2: finished")
    expect(console.locator("dd [data-status]")).to_have_text("completed")
    expect(log).to_have_attribute("data-finished", "true")
    _shot(console, screenshots, "08-run-done")
    console.goto(f"{seeded.server.origin}/console/jobs")
    expect(console.locator("main").get_by_text("completed").first).to_be_visible()
    _shot(console, screenshots, "09-jobs")


def test_instruments_and_the_status_timeline(
    console: Any, seeded: Seeded, screenshots: Path
) -> None:
    console.goto(f"{seeded.server.origin}/console/instruments")
    expect(console.get_by_role("link", name="Plate reader 2")).to_be_visible()
    expect(console.locator("main tbody .status")).to_have_text("online")
    _shot(console, screenshots, "10-instruments")
    console.get_by_role("link", name="Plate reader 2").click()
    console.get_by_role("link", name="last 24 hours").click()
    expect(console.get_by_role("heading", name="Status, last 24 hours")).to_be_visible()
    bands = console.locator("svg.timeline rect.band")
    # online, offline (silence), error, offline, online, offline, online now
    assert bands.count() >= 6
    expect(console.locator("svg.timeline rect.status-error")).to_have_count(1)
    assert console.locator("svg.timeline rect.status-offline").count() >= 2
    track = console.locator("svg.timeline").bounding_box()
    for i in range(bands.count()):  # every band is drawn inside the timeline, however short
        box = bands.nth(i).bounding_box()
        assert box["width"] > 0
        assert track["x"] <= box["x"]
        assert box["x"] + box["width"] <= track["x"] + track["width"]
    _shot(console, screenshots, "11-instrument")


def test_experiments_with_linked_files_and_rows(
    console: Any, seeded: Seeded, screenshots: Path
) -> None:
    console.goto(f"{seeded.server.origin}/console/experiments?status=running")
    expect(console.get_by_role("link", name="Growth curve 7")).to_be_visible()
    console.goto(f"{seeded.server.origin}/console/experiments?status=completed")
    expect(console.get_by_text("No experiments match.")).to_be_visible()
    console.goto(f"{seeded.server.origin}/console/experiments?tag=ecoli")
    _shot(console, screenshots, "12-experiments")
    console.get_by_role("link", name="Growth curve 7").click()
    expect(console.get_by_role("link", name=HOSTILE_NAME)).to_be_visible()
    expect(console.get_by_role("link", name="samples")).to_be_visible()
    _shot(console, screenshots, "13-experiment")


def test_a_dashboard_draws_every_widget(console: Any, seeded: Seeded, screenshots: Path) -> None:
    console.goto(f"{seeded.server.origin}/console/dashboards")
    console.get_by_role("link", name="Growth").click()
    expect(console.locator(".chart[data-drawn]")).to_have_count(4)
    drawn = console.evaluate(
        "[...document.querySelectorAll('.chart canvas')].map(c => {"
        "  const chart = window.Chart.getChart(c);"
        "  return [chart.config.type, chart.data.datasets[0].data.length];"
        "})"
    )
    assert drawn == [["line", 6], ["bar", 6], ["scatter", 6], ["bar", 4]]
    expect(console.locator(".widget-metric .value")).to_have_text("6")
    expect(console.locator(".widget-table tbody tr")).to_have_count(6)
    expect(console.get_by_role("heading", name="<b>Table</b>")).to_be_visible()
    expect(console.locator(".markdown")).to_have_text("**Growth** <script>x</script>")
    # placed on the grid: the bar chart sits to the right of the line chart
    line = console.locator(".widget-chart").nth(0).bounding_box()
    bar = console.locator(".widget-chart").nth(1).bounding_box()
    assert bar["x"] > line["x"] + line["width"] / 2
    assert abs(bar["y"] - line["y"]) < 2
    assert console.dialogs == []
    _shot(console, screenshots, "14-dashboard")


def test_the_notifications_inbox(console: Any, seeded: Seeded, screenshots: Path) -> None:
    console.goto(f"{seeded.server.origin}/console/notifications")
    expect(console.get_by_text("Run finished <script>alert(1)</script>")).to_be_visible()
    expect(console.get_by_text("Growth curve 7 finished")).to_be_visible()
    assert console.dialogs == []
    _shot(console, screenshots, "15-notifications")
