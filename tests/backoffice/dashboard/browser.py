"""Headless Chromium for the dashboard's browser tests: the system's ``chromium`` and
``chromedriver`` (Debian: packages chromium and chromium-driver; .ci/run installs them),
driven by Selenium. Without them the tests skip, unless CI=true (then they fail).

Screenshots go to ``test-artifacts/dashboard/<test>/`` at the repository root (ignored by
git; ``POSEDGE_TEST_ARTIFACTS`` moves it), kept after the run for people to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[3]
WAIT_S = 30.0


def find_chromium() -> tuple[str, str]:
    """(browser, driver) paths; skips (fails under CI=true) when either is missing."""
    browser = next(
        (found for name in ("chromium", "chromium-browser", "google-chrome")
         if (found := shutil.which(name))), None,
    )  # fmt: skip
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    missing = ", ".join(n for n, p in (("chromium", browser), ("chromedriver", driver)) if not p)
    reason = (f"no {missing} on PATH: install the system packages chromium and "
              "chromium-driver (apt-get install chromium chromium-driver) to run the "
              "dashboard's browser tests")  # fmt: skip
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def artifacts_dir(test_name: str) -> Path:
    root = Path(os.environ.get("POSEDGE_TEST_ARTIFACTS", REPO / "test-artifacts"))
    target = root / "dashboard" / test_name
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    return target


def start_chromium(profile: Path) -> webdriver.Chrome:
    browser, driver = find_chromium()
    options = Options()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--no-first-run", "--disable-extensions",
                 f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))


class Page:
    """The driver plus what every step checks: console errors, a screenshot."""

    def __init__(self, driver: webdriver.Chrome, artifacts: Path) -> None:
        self.driver = driver
        self.artifacts = artifacts
        self.shots = 0

    def wait(self, condition: Callable[[webdriver.Chrome], Any], what: str) -> Any:
        # A condition may read an element of the page being replaced (a form's POST answered
        # by a redirect): a stale or missing element means "not yet", asked again.
        # Chromium reports some such reads not as stale but as an inspector error naming a
        # node that "does not belong to the document": the same "not yet".
        ignored = (StaleElementReferenceException, NoSuchElementException)

        def asked(driver: webdriver.Chrome) -> Any:
            try:
                return condition(driver)
            except WebDriverException as exc:
                if "does not belong to the document" in str(exc.msg):
                    return False
                raise

        return WebDriverWait(
            self.driver, WAIT_S, poll_frequency=0.05, ignored_exceptions=ignored
        ).until(asked, message=f"timed out waiting for {what}")

    def console_errors(self) -> list[str]:
        """Console entries at level SEVERE since the last call (CSP violations are)."""
        return [str(e["message"]) for e in self.driver.get_log("browser")
                if e.get("level") == "SEVERE"]  # fmt: skip

    def checked(self, name: str) -> None:
        """Screenshot ``NN-name.png``; the page must have logged no console error."""
        self.shots += 1
        self.driver.save_screenshot(str(self.artifacts / f"{self.shots:02d}-{name}.png"))
        errors = self.console_errors()
        assert errors == [], f"console errors on {self.driver.current_url}: {errors}"
