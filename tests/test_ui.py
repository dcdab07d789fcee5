"""The review page in a real headless Chromium: upload two duplicates, see them paired."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import aiohttp
import asyncpg
import msgspec
import numpy as np
import pytest
from PIL import Image

from dupdetect.database import create_pool
from dupdetect.keys import KeyRegistry
from dupdetect.settings import DatabaseSettings, ServerSettings, Settings
from tests.conftest import serving
from tests.photos import edited_copy, jpeg

SCREENSHOT = os.environ.get("DUPDETECT_SCREENSHOT")
"""Where to save the page's screenshot (the README's docs/review-page.png), when asked: a test
run leaves the working tree as it found it."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("chromium") is None or shutil.which("chromedriver") is None,
        reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
    ),
]


def _browse(base_url: str, files: list[Path], key: str | None = None) -> tuple[list[str], bytes]:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1400",
    ):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        driver.get(f"{base_url}/ui")
        if key is not None:  # the first call is refused; the page asks for a key
            driver.find_element(By.ID, "files").send_keys(str(files[0]))
            WebDriverWait(driver, 30).until(ready.visibility_of_element_located((By.ID, "key")))
            assert "missing_api_key" in driver.find_element(By.ID, "results").text
            driver.find_element(By.ID, "key").send_keys(key)
            driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
            driver.execute_script("document.getElementById('files').value = ''")  # choose afresh
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        WebDriverWait(driver, 60).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".card.result .kind")))
        WebDriverWait(driver, 30).until(
            lambda d: all(img.get_attribute("naturalWidth") not in (None, "0") for img in d.find_elements(By.TAG_NAME, "img"))
        )
        kinds = [node.text for node in driver.find_elements(By.CSS_SELECTOR, ".card.result .kind")]
        # A decision, then its undo: the figure is dimmed, then shown again.
        figure = driver.find_element(By.CSS_SELECTOR, ".card.result .dups figure")
        figure.find_element(By.TAG_NAME, "button").click()
        WebDriverWait(driver, 30).until(lambda _: "dismissed" in (figure.get_attribute("class") or ""))
        figure.find_element(By.TAG_NAME, "button").click()  # now "Undo"
        WebDriverWait(driver, 30).until(lambda _: "dismissed" not in (figure.get_attribute("class") or ""))
        assert figure.find_element(By.TAG_NAME, "button").text == "Not a duplicate"
        # The group, its suggested keeper and metadata; the other copy marked for the bin.
        driver.find_element(By.ID, "tab-groups").click()
        WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".card.group figure")))
        copy = next(f for f in driver.find_elements(By.CSS_SELECTOR, ".card.group figure") if "suggested keep" not in f.text)
        assert "near exact 0.9" in copy.text  # the pair that put it in the group, with the best copy
        next(b for b in copy.find_elements(By.TAG_NAME, "button") if b.text == "Trash").click()
        WebDriverWait(driver, 30).until(lambda _: copy.get_attribute("data-mark") == "trash")
        # After a reload the mark is still shown, with the reason for the keeper.
        driver.refresh()
        driver.find_element(By.ID, "tab-groups").click()
        WebDriverWait(driver, 30).until(ready.presence_of_element_located((By.CSS_SELECTOR, ".card.group figure")))
        assert driver.find_element(By.CSS_SELECTOR, ".card.group .reason").text.startswith("kept: ")

        def marks(d: webdriver.Chrome) -> list[str]:  # read in one go: the page re-renders the groups
            return list(
                d.execute_script("return [...document.querySelectorAll('.card.group figure')].map((f) => f.dataset.mark)")
            )

        assert marks(driver) == ["", "trash"]
        # One click keeps the suggested copy and trashes the rest; Undo puts the marks back.
        group = driver.find_element(By.CSS_SELECTOR, ".card.group")
        next(b for b in group.find_elements(By.TAG_NAME, "button") if b.text.startswith("Keep suggested")).click()
        WebDriverWait(driver, 30).until(lambda d: marks(d) == ["keep", "trash"])
        driver.find_element(By.CSS_SELECTOR, "#bulk-status button").click()  # Undo
        WebDriverWait(driver, 30).until(lambda d: marks(d) == ["", "trash"])
        # Side by side: the keeper and the copy, full size, with what each holds and the pair.
        copy = driver.find_elements(By.CSS_SELECTOR, ".card.group figure")[1]
        next(b for b in copy.find_elements(By.TAG_NAME, "button") if b.text == "Compare").click()
        WebDriverWait(driver, 30).until(ready.visibility_of_element_located((By.CSS_SELECTOR, ".compare")))
        WebDriverWait(driver, 30).until(
            lambda d: all(
                img.get_attribute("naturalWidth") not in (None, "0") for img in d.find_elements(By.CSS_SELECTOR, ".compare img")
            )
        )
        shown = driver.find_element(By.CSS_SELECTOR, ".compare").text
        assert "Suggested keep" in shown and "This copy" in shown and "bytes" in shown and "near exact" in shown
        driver.execute_script("window.scrollTo(0, 0)")
        return kinds, driver.get_screenshot_as_png()
    finally:
        driver.quit()


async def test_upload_two_duplicates_and_see_them_paired(base_url: str, tmp_path: Path) -> None:
    original, copy = tmp_path / "rocket.jpg", tmp_path / "rocket-small.jpg"
    original.write_bytes(jpeg("rocket"))
    copy.write_bytes(edited_copy("rocket"))
    kinds, png = await asyncio.to_thread(_browse, base_url, [original, copy])
    assert kinds == ["near exact", "near exact"]  # each shown with the other
    async with aiohttp.ClientSession() as http, http.get(f"{base_url}/marks") as resp:
        assert [(m["file"], m["mark"]) for m in await resp.json()] == [("rocket-small.jpg", "trash")]
    if SCREENSHOT:
        Path(SCREENSHOT).write_bytes(png)


async def test_with_auth_on_the_page_asks_for_a_key_and_then_works(settings: Settings, tmp_path: Path) -> None:
    settings = msgspec.structs.replace(settings, server=ServerSettings(auth="on"))
    original, copy = tmp_path / "rocket.jpg", tmp_path / "rocket-small.jpg"
    original.write_bytes(jpeg("rocket"))
    copy.write_bytes(edited_copy("rocket"))
    async with serving(settings) as base_url:
        assert settings.database.database_url
        pool = await create_pool(settings.database.database_url, DatabaseSettings(), ef_search=40)
        try:
            token = (await KeyRegistry(pool).create("photos")).token
        finally:
            await pool.close()
        kinds, _ = await asyncio.to_thread(_browse, base_url, [original, copy], token)
    assert kinds == ["near exact", "near exact"]


def _upload_many(base_url: str, files: list[Path]) -> tuple[str, str | None]:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=shutil.which("chromedriver")))
    try:
        driver.get(f"{base_url}/ui")
        driver.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        WebDriverWait(driver, 120).until(lambda d: "added" in d.find_element(By.ID, "upload-status").text)
        return driver.find_element(By.ID, "upload-status").text, driver.find_element(By.ID, "progress").get_attribute("value")
    finally:
        driver.quit()


async def test_many_files_are_uploaded_in_batches_with_progress(base_url: str, settings: Settings, tmp_path: Path) -> None:
    files = []
    for n in range(45):  # more than one request's worth for the page (20 a batch)
        path = tmp_path / f"{n:02}.jpg"
        pixels = np.random.default_rng(n).integers(0, 255, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((160, 120)).save(path, "JPEG")
        files.append(path)
    status, progress = await asyncio.to_thread(_upload_many, base_url, files)
    assert status.startswith("45 of 45 image(s) added") and progress == "45"
    conn = await asyncpg.connect(settings.database.database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM requests") == 3  # 20 + 20 + 5
    finally:
        await conn.close()
