"""The node's query console in headless Chromium (selenium): it loads with no internet access,
runs a GraphQL query against the node and shows the result.

Chromium and chromedriver come from Debian (scripts/setup.sh installs them); the driver is given
by path so selenium-manager never reaches for the network.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import (
    GOLDEN,
    PUBLISH,
    STORIES_DIR,
    NodeProcess,
    file_input,
    start_node,
    stop_node,
)

from edgechain.client import Client
from edgechain.service.engine.wasm import PACKAGED_GUEST
from edgechain.service.weight_server import WeightServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("serve-browser") / "net"
    Client.up(directory, validators=4).close()
    node = start_node(directory)
    try:
        yield node
    finally:
        stop_node(node)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "chromium and chromedriver are needed: run scripts/setup.sh"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_console_runs_a_query_and_shows_the_result(
    node: NodeProcess, browser: webdriver.Chrome
) -> None:
    node.data(
        PUBLISH,
        {
            "name": "browser-model",
            "version": "7",
            "w": file_input(STORIES_DIR / "stories260K.bin", "http://127.0.0.1:9/w.bin"),
            "t": file_input(STORIES_DIR / "tok512.bin", "http://127.0.0.1:9/t.bin"),
        },
    )
    browser.get(node.graphql_url)
    assert "edgechain" in browser.title
    query = browser.find_element(By.ID, "query")
    query.clear()
    query.send_keys('{ model(name: "browser-model") { name version signers } }')
    browser.find_element(By.ID, "run").click()
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 30).until(lambda _: '"version": "7"' in result.text)
    assert '"name": "browser-model"' in result.text
    assert "HTTP 200" in browser.find_element(By.ID, "status").text
    # The page loaded nothing from elsewhere: every resource it fetched came from the node.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert all(url.startswith(node.base_url) for url in resources), resources


def test_console_shows_a_typed_error(node: NodeProcess, browser: webdriver.Chrome) -> None:
    browser.get(node.graphql_url)
    query = browser.find_element(By.ID, "query")
    query.clear()
    query.send_keys('{ model(name: "missing") { name } }')
    browser.find_element(By.ID, "run").click()
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 30).until(lambda _: "ModelNotFound" in result.text)
    assert "no model named missing in certified state" in result.text


def test_console_streams_a_generation(node: NodeProcess, browser: webdriver.Chrome) -> None:
    """Needs the wasm guest (scripts/build_guest.sh): fails without it."""
    assert PACKAGED_GUEST.is_file(), "the wasm guest is missing: run scripts/build_guest.sh"
    with WeightServer(STORIES_DIR) as weights:
        node.data(
            PUBLISH,
            {
                "name": "stories260K",
                "version": "1",
                "w": file_input(STORIES_DIR / "stories260K.bin", weights.url("stories260K.bin")),
                "t": file_input(STORIES_DIR / "tok512.bin", weights.url("tok512.bin")),
            },
        )
        browser.get(node.graphql_url)
        browser.find_element(By.ID, "gen-run").click()  # stories260K, greedy, 64 tokens
        record = browser.find_element(By.ID, "gen-record")
        WebDriverWait(browser, 60).until(lambda _: "stop_reason" in record.text)
    output = browser.find_element(By.ID, "gen-output").text
    golden = GOLDEN.read_text(encoding="utf-8")
    assert output.startswith("Once upon a time, there was")
    assert golden.startswith(output)
    assert '"output_tokens": 64' in record.text
