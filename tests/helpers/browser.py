"""A real browser for the console's tests: Debian's chromium, headless, driven by chromium-driver.

Nothing is downloaded: Selenium is given the system's chromium and chromedriver (``./dev test``
installs both). Screenshots go to ``.pushbuild/screenshots/`` in the checkout, for review.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".pushbuild" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)


def require_chromium() -> None:
    """Skip when chromium is not installed, unless the run promised every service (``./dev test``)."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        if os.environ.get("PUSHBUILD_TEST_REQUIRE_SERVICES"):
            pytest.fail("chromium and chromium-driver are not installed (./dev test installs them)")
        pytest.skip("chromium and chromium-driver are not installed")


class Browser:
    """One headless chromium with its own profile (cookies), at desktop size unless told otherwise."""

    def __init__(self, base_url: str, *, size: tuple[int, int] = DESKTOP) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_AVOID_STATS", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-extensions", "--lang=en-US", f"--window-size={size[0]},{size[1]}"):
            options.add_argument(argument)
        self.base_url = base_url
        self.driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        found = self.find_all(css)
        return found[0].text if found else ""

    def button(self, label: str) -> Any:
        """The button whose text is ``label`` (one only)."""
        [match] = [b for b in self.find_all("button") if b.text.strip() == label]
        return match

    def wait_until(self, check: Callable[[], Any], *, timeout_s: float = 120, what: str) -> Any:
        """Poll ``check`` (without reloading the page) until it is truthy; a screenshot is saved when it never is."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                value = check()
            except Exception:  # the page is between states (a re-rendered row): look again
                value = None
            if value:
                return value
            time.sleep(0.2)
        self.screenshot(f"timeout-{what.replace(' ', '-')[:40]}")
        raise AssertionError(f"timed out waiting for {what}; the page said:\n{self.text('main')[:2000]}")

    def fetch(self, path: str, *, method: str = "GET", body: str | None = None) -> dict[str, Any]:
        """Make a request from the page, as its own script would (cookies ride along); return status and text."""
        return self.driver.execute_async_script(
            """const [url, method, body, done] = arguments;
            fetch(url, {method, body, credentials: "same-origin",
                        headers: body ? {"Content-Type": "application/x-www-form-urlencoded"} : {}})
              .then(async r => done({status: r.status, text: await r.text()}))
              .catch(e => done({status: 0, text: String(e)}));""", path, method, body)

    def screenshot(self, name: str) -> Path:
        """Save the whole page as ``.pushbuild/screenshots/<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        width = self.driver.execute_script("return document.documentElement.scrollWidth")
        height = self.driver.execute_script("return document.documentElement.scrollHeight")
        size = self.driver.get_window_size()
        self.driver.set_window_size(size["width"], min(max(height + 140, size["height"]), 4000))
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(size["width"], size["height"])
        assert width <= size["width"], f"{name}: the page is {width} px wide in a {size['width']} px window"
        return path

    def quit(self) -> None:
        self.driver.quit()
