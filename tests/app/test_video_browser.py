"""The Video tab in a real browser (Playwright driving Debian's Chromium): a clip dropped on the tab streams the
timeline and ends with the clip's verdict and face strip; "Explain the most suspicious frame" opens that frame in
the Analyse tab and scores it. The screenshot goes to ``artifacts/screenshots/app_video.png`` (copied to
``docs/app_video.png`` for the README). Skipped with a reason when Chromium or Playwright is missing."""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ARTIFACTS, BROWSER_MARKS
from tests.video_clips import mixed_frames, write

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def webm_clip(tmp_path_factory) -> Path:
    """The mixed clip (face, no face, face) as VP8 WebM, which Chromium plays."""
    return write(tmp_path_factory.mktemp("video_browser") / "interview.webm", mixed_frames(), fourcc="VP80")


def test_drop_a_clip_see_timeline_verdict_strip_then_explain_its_frame(app_server, browser, webm_clip, request):
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    try:
        page.goto(app_server[0])
        page.wait_for_selector("#run", timeout=60_000)
        page.get_by_role("tab", name="Video").click()
        page.get_by_label("Custom CNN").last.check()  # the Video tab's radio (the Analyse tab has its own)
        page.set_input_files("#video-input input[type=file]", str(webm_clip))  # the upload starts the analysis
        verdict = page.locator("#video-verdict")
        page.wait_for_function("() => /Verdict: |Inconclusive: /.test("
                               "document.querySelector('#video-verdict')?.innerText || '')", timeout=180_000)
        text = verdict.inner_text()
        assert "frames scored" in text and "On held-out test images" in text
        assert "no face" in text.lower()  # the coffee segment is reported
        timeline = page.locator("#video-timeline img").first
        timeline.wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => { const i = document.querySelector('#video-timeline img');"
                               " return i && i.complete && i.naturalWidth > 300; }", timeout=30_000)
        assert page.locator("#video-strip img").count() >= 4
        assert "Done:" in page.locator("#video-status").inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "app_video.png"), full_page=True)

        # pick a frame in the strip (the 5th crop: 3.0 s, after the no-face gap)
        page.locator("#video-strip .thumbnail-item").nth(4).click()
        page.wait_for_function("() => /picked frame \\(3\\.0 s\\)/.test("
                               "document.querySelector('#video-send-pick')?.innerText || '')", timeout=30_000)

        send = page.locator("#video-send-top")
        assert "most suspicious frame (" in send.inner_text()
        send.click()
        page.locator("#input-image img").first.wait_for(state="visible", timeout=30_000)  # the Analyse tab
        page.wait_for_function("() => (document.querySelector('#verdict')?.innerText || '').includes('Custom CNN')",
                               timeout=120_000)  # and the frame is being analysed there
        page.locator("#stop").click()  # the maps are not needed here

        page.get_by_role("tab", name="Video").click()
        page.locator("#video-send-pick").click()
        page.wait_for_function("() => (document.querySelector('#verdict')?.innerText || '').includes('Custom CNN')"
                               " && /frame at 3\\.0 s was sent/.test("
                               "document.querySelector('#video-status')?.innerText || '')", timeout=120_000)
        page.locator("#stop").click()
    except Exception:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"FAILED_{request.node.name}.png"), full_page=True)
        raise
    finally:
        page.close()
