"""Screenshots of the app for ``docs/``, taken on the shipped checkpoints (not test weights).

``python -m tools.screenshots [--out docs] [--image examples/photo_astronaut_real.jpg] [--timeout 900]``

Starts the app in this process on the configured checkpoints (``DEEPFAKE_CHECKPOINTS``, default
``checkpoints/``), opens it in Debian's Chromium through Playwright (``apt-get install -y chromium``),
analyses the image with the preselected detector (the most reliable) and every method, and writes
``app_result.png`` (light, 1280 px), ``app_dark.png`` (dark theme), ``app_phone.png`` (390 px phone)
and ``iframe_900.png`` (the page in a 900-px iframe). The later pages reuse the result cache, so
only the first analysis costs time. Exit status: 0 written, 2 Chromium or Playwright missing.
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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNG files (default: docs/)")
    ap.add_argument("--image", type=Path, default=ROOT / "examples" / "photo_astronaut_real.jpg")
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
                page.screenshot(path=str(args.out / name), full_page=True)
                print(args.out / name)
                page.close()
            host = args.out / "_embed.html"
            height = 2600
            host.write_text(f"<!doctype html><html><body style='margin:0'><iframe id='app' src='{url}' width='900' "
                            f"height='{height}' style='border:1px solid #888'></iframe></body></html>")
            try:
                page = browser.new_page(viewport={"width": 920, "height": 1200})
                page.goto(host.as_uri())
                _analyse(page.frame_locator("#app"), args.image, timeout_ms)
                page.wait_for_timeout(1500)
                inner = next(f for f in page.frames if f.url.startswith(url))
                h = inner.evaluate("document.querySelector('.gradio-container').getBoundingClientRect().bottom")
                print(f"page height inside the 900-px iframe: {h:.0f} px")
                page.screenshot(path=str(args.out / "iframe_900.png"), full_page=True)
                print(args.out / "iframe_900.png")
            finally:
                host.unlink(missing_ok=True)
            browser.close()
    finally:
        app.demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
