"""Screenshots of the app for ``docs/``, taken on the shipped checkpoints (not test weights).

``python -m tools.screenshots [--out docs] [--image examples/photo_astronaut_real.jpg]
[--example gan140k_fake_00ELJIYESN.jpg] [--timeout 900]``

Starts the app in this process on the configured checkpoints (``DEEPFAKE_CHECKPOINTS``, default
``checkpoints/``), opens it in Debian's Chromium through Playwright (``apt-get install -y chromium``),
analyses the image with the preselected detector (the most reliable) and every method, and writes
``app_result.png`` (light, 1280 px), ``app_dark.png`` (dark theme), ``app_phone.png`` (390 px phone),
``app_example.png`` (after clicking the ``--example`` thumbnail in the examples gallery) and
``iframe_900.png`` (the page in a 900-px iframe; it prints the page's height there before an analysis,
with its result and with a "Compare all" result: the README's embed snippet height). The later pages
reuse the result cache, so only the first analysis of each image costs time. Exit status: 0 written,
2 Chromium or Playwright missing (or ``--example`` not in ``examples/``).
"""
from __future__ import annotations

import argparse
import re
import shutil
import socket
import sys
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _analyse(frame, image: Path, timeout_ms: int) -> None:
    """Upload ``image`` in a page or frame, press Analyse and wait for "Done"."""
    frame.locator("#run").wait_for(timeout=120_000)
    frame.locator("#input-image input[type=file]").set_input_files(str(image))
    frame.locator("#input-image img").first.wait_for(timeout=60_000)
    frame.locator("#run").click()
    frame.locator("#status", has_text=re.compile(r"Done in \d")).wait_for(timeout=timeout_ms)


def _settle(frame) -> None:
    """Let the examples gallery's lazy thumbnails load (full-page shots skip images never scrolled to)."""
    frame.locator("#examples").scroll_into_view_if_needed()
    frame.wait_for_function("[...document.querySelectorAll('#examples img')].every(i => i.complete && i.naturalWidth)",
                            timeout=30_000)
    frame.evaluate("window.scrollTo(0, 0)")


def _set_height(page, height: int) -> None:
    """Resize the iframe ``#app`` and the browser window around it (Chromium paints, and Gradio renders, a frame's
    content only where it is in view)."""
    page.evaluate("(h) => { document.getElementById('app').height = h; }", height)
    page.set_viewport_size({"width": 920, "height": height})
    page.wait_for_timeout(1000)


def _page_height(page, frame, tall: int) -> int:
    """The app's page height in px in the iframe: rendered at ``tall`` px, read with the iframe shortened to 800 px
    (a taller iframe stretches the page to fill it), then back to ``tall``."""
    _set_height(page, 800)
    height = int(frame.evaluate("document.documentElement.scrollHeight"))
    _set_height(page, tall)
    return height


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNG files (default: docs/)")
    ap.add_argument("--image", type=Path, default=ROOT / "examples" / "photo_astronaut_real.jpg")
    ap.add_argument("--example", default="gan140k_fake_00ELJIYESN.jpg",
                    help="file in examples/ whose thumbnail app_example.png clicks")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for the first analysis")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        print("error: needs Debian's chromium (apt-get install -y chromium) and the playwright package",
              file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    import app
    from analysis import text

    if (app.EXAMPLES_DIR / args.example) not in text.example_files(app.EXAMPLES_DIR):
        print(f"error: --example {args.example} is not an image in {app.EXAMPLES_DIR}", file=sys.stderr)
        return 2

    app.service().start_preload()
    app.service().await_preload()  # the start-up thread must not still be importing when the process exits
    port = _free_port()
    app.demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True,
                    **app.launch_kwargs())
    url = f"http://127.0.0.1:{port}/"
    args.out.mkdir(parents=True, exist_ok=True)
    timeout_ms = int(args.timeout * 1000)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=ARGS)
            for name, kw, query in (("app_result.png", {"viewport": {"width": 1280, "height": 1000}}, ""),
                                    ("app_dark.png", {"viewport": {"width": 1280, "height": 1000}}, "?__theme=dark"),
                                    ("app_phone.png", {"viewport": {"width": 390, "height": 844}, "is_mobile": True},
                                     "")):
                page = browser.new_page(**kw)
                page.goto(url + query)
                _analyse(page, args.image, timeout_ms)
                page.wait_for_timeout(1500)  # last images painted
                _settle(page)
                page.screenshot(path=str(args.out / name), full_page=True)
                print(args.out / name)
                page.close()
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#run").wait_for(timeout=120_000)
            page.locator("#examples .caption-label", has_text=text.example_label(Path(args.example))).click()
            page.locator("#status", has_text=re.compile(r"Done in \d")).wait_for(timeout=timeout_ms)
            page.wait_for_timeout(1500)
            _settle(page)
            page.screenshot(path=str(args.out / "app_example.png"), full_page=True)
            print(args.out / "app_example.png")
            page.close()
            host = args.out / "_embed.html"
            tall = 3200  # taller than the page, so all of it is rendered
            host.write_text(f"<!doctype html><html><body style='margin:0'><iframe id='app' src='{url}' width='900' "
                            f"height='{tall}' style='border:0'></iframe></body></html>")
            try:
                page = browser.new_page(viewport={"width": 920, "height": tall})
                page.goto(host.as_uri())
                frame = page.frame_locator("#app")
                frame.locator("#run").wait_for(timeout=120_000)
                inner = next(f for f in page.frames if f.url.startswith(url))
                page.wait_for_timeout(1500)
                before = _page_height(page, inner, tall)
                _analyse(frame, args.image, timeout_ms)
                page.wait_for_timeout(1500)
                after = _page_height(page, inner, tall)
                height = max(before, after)
                _set_height(page, height)
                scroll_h, client_h = inner.evaluate("[document.documentElement.scrollHeight, "
                                                    "document.documentElement.clientHeight]")
                _settle(inner)
                page.screenshot(path=str(args.out / "iframe_900.png"), full_page=True)
                print(args.out / "iframe_900.png")
                _set_height(page, tall)
                frame.get_by_label("Compare all").check()  # the tallest result: a row per detector
                frame.locator("#run").click()
                frame.locator("#verdict", has_text="Combined verdict").wait_for(timeout=timeout_ms)
                frame.locator("#status", has_text=re.compile(r"Done in \d")).wait_for(timeout=timeout_ms)
                page.wait_for_timeout(1500)
                compare = _page_height(page, inner, tall)
                print(f"page height in a 900-px-wide iframe: {before} px before an analysis, {after} px with its "
                      f"result, {compare} px with a Compare all result; in an iframe {height} px high the page is "
                      f"{scroll_h} px ({'no inner scrollbar' if scroll_h <= client_h else 'inner scrollbar'})")
            finally:
                host.unlink(missing_ok=True)
            browser.close()
    finally:
        app.demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
