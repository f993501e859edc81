#!/usr/bin/env python3
"""Drives Gatepost's console in headless Chromium, as an operator would (Selenium with
Debian's chromium and chromium-driver; installed by scripts/install-test-deps).

    console-browser-test.py URL USER PASSWORD SITE FILE_NAME SHA256 SCREENSHOTS

Logs in; disables SITE and sees its state say so, enables it again; asks for a poll now and
sees the new transfer; finds it by FILE_NAME in the transfer catalog; opens it; downloads its
file (with the browser's session) and compares the SHA-256; reads /metrics for the polls'
counters. A screenshot of each step goes
into SCREENSHOTS. Exit 0 when every step held; otherwise the step that failed, on stderr."""
import hashlib
import os
import sys
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait


def main():
    url, user, password, site, file_name, sha256, shots = sys.argv[1:8]
    os.makedirs(shots, exist_ok=True)
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,900", "--no-first-run", "--disable-extensions"):
        options.add_argument(argument)
    # The driver Debian ships, never one fetched from the network.
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    step = "start"
    try:
        wait = WebDriverWait(browser, 30)

        def shot(name):
            browser.save_screenshot(os.path.join(shots, name + ".png"))

        def state_of(site_name):
            row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{site_name}']]")
            return row.find_element(By.CSS_SELECTOR, "[data-state]").get_attribute("data-state")

        step = "log in"
        browser.get(url + "/")
        wait.until(ec.presence_of_element_located((By.NAME, "password")))
        shot("1-login")
        browser.find_element(By.NAME, "name").send_keys(user)
        browser.find_element(By.NAME, "password").send_keys(password)
        browser.find_element(By.TAG_NAME, "form").submit()
        wait.until(ec.title_contains("Dashboard"))
        assert f"{user} (operator)" in browser.page_source, "not logged in as " + user
        shot("2-dashboard")

        step = "disable the site"
        assert state_of(site) == "enabled", "the site is not enabled at first"
        row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{site}']]")
        row.find_element(By.XPATH, ".//button[text()='Disable']").click()
        wait.until(lambda b: state_of(site) == "disabled")
        shot("3-disabled")
        row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{site}']]")
        row.find_element(By.XPATH, ".//button[text()='Enable']").click()
        wait.until(lambda b: state_of(site) == "enabled")

        step = "poll now"
        row = browser.find_element(By.XPATH, f"//tr[td/a[text()='{site}']]")
        row.find_element(By.XPATH, ".//button[text()='Poll now']").click()
        wait.until(ec.title_contains("Dashboard"))
        shot("4-polled")

        step = "find the transfer by file name"
        browser.get(url + "/transfers")
        search = browser.find_element(By.NAME, "q")
        search.send_keys(file_name)
        search.submit()
        wait.until(ec.presence_of_element_located((By.LINK_TEXT, file_name)))
        shot("5-found")
        browser.find_element(By.LINK_TEXT, file_name).click()
        wait.until(ec.presence_of_element_located((By.ID, "download")))
        shot("6-transfer")

        step = "download the file"
        link = browser.find_element(By.ID, "download").get_attribute("href")
        cookie = "; ".join(f"{c['name']}={c['value']}" for c in browser.get_cookies())
        with urllib.request.urlopen(urllib.request.Request(link, headers={"Cookie": cookie}), timeout=30) as response:
            digest = hashlib.sha256(response.read()).hexdigest()
        assert digest == sha256, f"downloaded SHA-256 {digest}, expected {sha256}"

        step = "metrics"
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers={"Cookie": cookie}), timeout=30) as response:
            metrics = response.read().decode()
        # The engine's counters, recorded by the daemon's polls (the one asked for included).
        for name in ("gatepost_polls_total", "gatepost_messages_total", "gatepost_poll_duration_seconds"):
            assert any(line.startswith(name) and f'site="{site}"' in line for line in metrics.splitlines()), f"no {name} for {site}"
        assert any(line.startswith("gatepost_polls_total") and 'result="ok"' in line for line in metrics.splitlines())
        print("console browser test: every step held")
    except Exception as error:  # noqa: BLE001 - the step and the error are the report
        try:
            browser.save_screenshot(os.path.join(shots, "failed.png"))
        except Exception:  # noqa: BLE001
            pass
        print(f"console browser test failed at '{step}': {error!r}", file=sys.stderr)
        sys.exit(1)
    finally:
        browser.quit()


if __name__ == "__main__":
    main()
