"""The review page in a real headless Chromium: upload two duplicates, see them paired."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.photos import edited_copy, jpeg

SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "review-page.png"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None or shutil.which("chromedriver") is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


def _browse(base_url: str, files: list[Path]) -> tuple[list[str], bytes]:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,900"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(f"{base_url}/ui")
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        WebDriverWait(driver, 60).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".card.result .kind")))
        WebDriverWait(driver, 30).until(
            lambda d: all(img.get_attribute("naturalWidth") not in (None, "0") for img in d.find_elements(By.TAG_NAME, "img"))
        )
        kinds = [node.text for node in driver.find_elements(By.CSS_SELECTOR, ".card.result .kind")]
        return kinds, driver.get_screenshot_as_png()
    finally:
        driver.quit()


async def test_upload_two_duplicates_and_see_them_paired(base_url: str, tmp_path: Path) -> None:
    original, copy = tmp_path / "rocket.jpg", tmp_path / "rocket-small.jpg"
    original.write_bytes(jpeg("rocket"))
    copy.write_bytes(edited_copy("rocket"))
    kinds, png = await asyncio.to_thread(_browse, base_url, [original, copy])
    assert kinds == ["near exact", "near exact"]  # each shown with the other
    SCREENSHOT.parent.mkdir(exist_ok=True)
    SCREENSHOT.write_bytes(png)
