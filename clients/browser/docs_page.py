"""The Swagger UI page at /docs in a real browser (Debian's headless Chromium through
chromium-driver and Selenium): the operations are listed, and GET /devices run from the page with
"Try it out" / "Execute" shows a 200 answer. Screenshots in $IPET_ARTIFACTS: docs-operations.png
(the list) and docs.png (the executed request and its answer).

    IPET_BASE_URL=http://127.0.0.1:PORT IPET_ARTIFACTS=target/artifacts python clients/browser/docs_page.py
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

# Selenium must not look for (or download) a driver or browser: Debian's are given below.
os.environ.setdefault("SE_OFFLINE", "true")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

EXPECTED_PATHS = [
    "/perturbations/{dev_id}/{generation}",
    "/perturbations/jobs/{id}",
    "/devices",
    "/simulations",
    "/simulations/{id}",
    "/simulations/{id}/output",
    "/healthz",
    "/readyz",
    "/metrics",
]


def find(name: str, *candidates: str) -> str:
    for c in (os.environ.get(name), *candidates):
        if c and shutil.which(c):
            return shutil.which(c)
    sys.exit(f"docs_page: no {candidates[0]} (install Debian's chromium and chromium-driver: scripts/setup.sh)")


def main() -> int:
    base = os.environ["IPET_BASE_URL"].rstrip("/")
    artifacts = Path(os.environ.get("IPET_ARTIFACTS", "target/artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    profile = tempfile.mkdtemp(prefix="ipet-chromium-")

    options = webdriver.ChromeOptions()
    options.binary_location = find("CHROMIUM", "chromium", "chromium-browser")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--window-size=1280,1600"):
        options.add_argument(flag)
    service = Service(executable_path=find("CHROMEDRIVER", "chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        wait = WebDriverWait(driver, 30)
        driver.get(f"{base}/docs/")
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, ".opblock")))
        assert "ipet" in driver.find_element(By.CSS_SELECTOR, ".info .title").text

        listed = {e.get_attribute("data-path") for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        missing = [p for p in EXPECTED_PATHS if p not in listed]
        assert not missing, f"operations not listed on the page: {missing} (listed: {sorted(listed)})"
        driver.save_screenshot(str(artifacts / "docs-operations.png"))
        print(f"docs_page: {len(listed)} paths listed, {len(driver.find_elements(By.CSS_SELECTOR, '.opblock'))} operations")

        # GET /devices: expand, Try it out, Execute.
        block = driver.find_element(By.CSS_SELECTOR, "#operations-models-get_devices")
        block.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
        wait.until(lambda d: block.find_elements(By.CSS_SELECTOR, ".try-out__btn"))
        block.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
        execute = wait.until(lambda d: block.find_element(By.CSS_SELECTOR, ".execute"))
        execute.click()
        status = wait.until(lambda d: block.find_element(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"))
        assert status.text.strip().startswith("200"), f"GET /devices from the page answered {status.text!r}"
        body = block.find_element(By.CSS_SELECTOR, ".live-responses-table .response-col_description pre").text
        assert "schlage-lock-01" in body, body[:200]
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", block)
        shot = artifacts / "docs.png"
        driver.save_screenshot(str(shot))
        print(f"docs_page: GET /devices executed from the page: {status.text.strip()}; screenshot {shot}")
        return 0
    except Exception:
        driver.save_screenshot(str(artifacts / "docs-failure.png"))
        print(f"docs_page: failed; the page as it was: {artifacts / 'docs-failure.png'}", file=sys.stderr)
        raise
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
