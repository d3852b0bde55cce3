"""Debian's Chromium, headless, driven by Playwright, for the web console's tests.

Playwright cannot download its own browsers here (plants and CI machines are offline), so it
drives the system's `chromium` package. The flags keep Chromium from reaching for Google's
services, which a closed network refuses many times a second.
"""

import os
import shutil

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]

SCREENSHOT_DIR = os.environ.get("IRONBRIDGE_SCREENSHOT_DIR", "target/console-screenshots")


def chromium_path() -> str:
    path = os.environ.get("IRONBRIDGE_CHROMIUM") or shutil.which("chromium")
    if not path:
        raise RuntimeError("Debian's chromium package is missing; scripts/test-all.sh installs it")
    return path


def launch(playwright):
    return playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
    )


def save_screenshots(context, test_name: str) -> list[str]:
    """A full-page screenshot of every page of `context`, for a failed test."""
    os.makedirs(SCREENSHOT_DIR, exist_ok=True)
    saved = []
    for index, page in enumerate(context.pages):
        path = os.path.join(SCREENSHOT_DIR, f"{test_name}-{index}.png")
        try:
            page.screenshot(path=path, full_page=True)
            saved.append(path)
        except Exception as error:  # A crashed page still lets the others be saved.
            print(f"no screenshot of page {index}: {error}")
    return saved
