"""GraphiQL, served by the node, in headless Chromium (selenium): it loads with no internet
access (every file from the node), its docs explorer lists the schema, a query runs (with
variables; typing offers the schema's fields), the ``generate`` subscription streams tokens
over graphql-transport-ws, and a seed copied from a result in GraphiQL reproduces the same text
with the CLI. ``GET /`` is GraphiQL on the chain-level schema, linking to it.

Screenshots go to the test's tmp dir, and also to ``$EDGECHAIN_SCREENSHOTS_DIR`` when set (the
README's images in docs/screenshots/ are made with it).

Chromium and chromedriver come from Debian (scripts/setup.sh installs them); the driver is given
by path so selenium-manager never reaches for the network.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from serve_helpers import (
    GOLDEN,
    STORIES_DIR,
    NodeProcess,
    publish_files,
    running_node,
)

from edgechain.service.engine.wasm import PACKAGED_GUEST
from edgechain.testing.weight_server import WeightServer

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS_ENV = "EDGECHAIN_SCREENSHOTS_DIR"
WAIT_S = 60
WEIGHTS = "stories260K.bin"


@pytest.fixture(scope="module")
def node(network_dir: Path) -> Iterator[NodeProcess]:
    assert PACKAGED_GUEST.is_file(), "the wasm guest is missing: run scripts/build_guest.sh"
    with WeightServer(STORIES_DIR) as weights, running_node(network_dir) as node:
        tokenizer = STORIES_DIR / "tok512.bin"
        publish_files(node, "stories260K", STORIES_DIR / WEIGHTS, tokenizer, weights.base_url)
        yield node


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    assert CHROMIUM.is_file() and CHROMEDRIVER.is_file(), (
        "chromium and chromedriver are needed: run scripts/setup.sh"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def screenshot(browser: webdriver.Chrome, directory: Path, name: str) -> Path:
    """Save a PNG of the page in ``directory`` (and a copy in $EDGECHAIN_SCREENSHOTS_DIR)."""
    path = directory / f"{name}.png"
    assert browser.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get(SCREENSHOTS_ENV):
        shutil.copyfile(path, Path(os.environ[SCREENSHOTS_ENV]) / path.name)
    return path


def open_graphiql(browser: webdriver.Chrome, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, ".graphiql-query-editor .CodeMirror")
        and b.find_elements(By.CSS_SELECTOR, ".graphiql-execute-button")
    )


def stored(browser: webdriver.Chrome, name: str) -> str | None:
    """GraphiQL's saved ``name`` (query, variables, ...) for the page open in ``browser``: each
    endpoint's page keeps its editor state under its own prefix."""
    return browser.execute_script(
        "return localStorage.getItem(window.edgechainStoragePrefix + 'graphiql:' + arguments[0])",
        name,
    )


def editor_text(browser: webdriver.Chrome) -> str:
    return browser.execute_script(
        "return document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror.getValue();"
    )


def set_editor(browser: webdriver.Chrome, editor: str, key: str, text: str) -> None:
    """Put ``text`` in the GraphiQL editor under CSS selector ``editor`` and wait until GraphiQL
    has taken it in (stored under ``key``)."""
    # Through CodeMirror's API (typing would auto-close brackets); GraphiQL takes an edit in a
    # little later (debounced), and saves it in localStorage when it has.
    browser.execute_script(
        "document.querySelector(arguments[0] + ' .CodeMirror').CodeMirror"
        ".setValue(arguments[1]);",
        editor,
        text,
    )
    WebDriverWait(browser, WAIT_S).until(lambda b: stored(b, key) == text)


def run_in_graphiql(browser: webdriver.Chrome, query: str) -> None:
    """Put ``query`` in GraphiQL's editor (replacing what is there) and press run."""
    set_editor(browser, ".graphiql-query-editor", "query", query)
    # A found button can go stale (GraphiQL re-renders it): click it from the page.
    browser.execute_script("document.querySelector('.graphiql-execute-button').click();")


def response_text(browser: webdriver.Chrome) -> str:
    return browser.execute_script(
        "return document.querySelector('.graphiql-response .CodeMirror').CodeMirror.getValue();"
    )


def wait_for_response(browser: webdriver.Chrome, marker: str) -> str:
    WebDriverWait(browser, WAIT_S).until(lambda b: marker in response_text(b))
    return response_text(browser)


def test_graphiql_loads_offline_with_its_docs_explorer(
    node: NodeProcess, browser: webdriver.Chrome, screenshots: Path
) -> None:
    open_graphiql(browser, node.graphql_url)
    assert "GraphiQL" in browser.title
    assert browser.find_elements(By.CSS_SELECTOR, "button[aria-label='Show History']")
    docs = "button[aria-label='Show Documentation Explorer']"
    browser.find_element(By.CSS_SELECTOR, docs).click()
    explorer = WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".graphiql-doc-explorer")
    )
    # The schema was introspected: the explorer lists the registry's root types.
    WebDriverWait(browser, WAIT_S).until(lambda _: "Mutation" in explorer.text)
    assert "Query" in explorer.text and "Subscription" in explorer.text
    screenshot(browser, screenshots, "graphiql-docs")
    # The page loaded nothing from elsewhere: every resource it fetched came from the node.
    resources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert resources and all(url.startswith(node.base_url) for url in resources), resources


def test_graphiql_runs_a_query(
    node: NodeProcess, browser: webdriver.Chrome, screenshots: Path
) -> None:
    open_graphiql(browser, node.graphql_url)
    run_in_graphiql(browser, '{ model(name: "stories260K") { name version signers } }')
    result = json.loads(wait_for_response(browser, '"signers"'))
    assert result["data"]["model"]["name"] == "stories260K"
    assert result["data"]["model"]["version"] == "1"
    screenshot(browser, screenshots, "graphiql-query")
    run_in_graphiql(browser, '{ model(name: "missing") { name } }')
    error = json.loads(wait_for_response(browser, "ModelNotFound"))
    assert "no model named missing" in error["errors"][0]["message"]


def test_graphiql_streams_the_generate_subscription(
    node: NodeProcess, browser: webdriver.Chrome, screenshots: Path
) -> None:
    open_graphiql(browser, node.graphql_url)
    # Record every value the result pane shows: a subscription replaces it at each token.
    browser.execute_script(
        "const cm = document.querySelector('.graphiql-response .CodeMirror').CodeMirror;"
        "window.shown = []; cm.on('change', () => window.shown.push(cm.getValue()));"
    )
    run_in_graphiql(
        browser,
        'subscription { generate(model: "stories260K", prompt: "Once upon a time", '
        "maxTokens: 64, temperature: 0) {"
        " ... on TokenUpdate { id text }"
        " ... on GenerationResult { text outputTokens stopReason } } }",
    )
    final = json.loads(wait_for_response(browser, '"stopReason"'))["data"]["generate"]
    screenshot(browser, screenshots, "graphiql-subscription")
    shown = browser.execute_script("return window.shown")
    tokens = [json.loads(s)["data"]["generate"] for s in shown if '"id"' in s]
    assert len({t["id"] for t in tokens}) > 1, "tokens did not stream one by one"
    assert final["outputTokens"] == 64
    golden = GOLDEN.read_text(encoding="utf-8")
    assert golden.startswith("Once upon a time" + final["text"])


def test_a_seed_copied_from_graphiql_reproduces_the_text_with_the_cli(
    node: NodeProcess, network_dir: Path, browser: webdriver.Chrome
) -> None:
    open_graphiql(browser, node.graphql_url)
    run_in_graphiql(
        browser,
        '{ generate(model: "stories260K", prompt: "Lily", temperature: 1.0, maxTokens: 20)'
        " { text seed seedSource } }",
    )
    shown = wait_for_response(browser, '"seedSource"')
    # Read the seed as the page shows it (a number or a string: exact digits either way).
    seed = re.search(r'"seed":\s*"?(\d+)"?', shown).group(1)
    text = json.loads(shown)["data"]["generate"]["text"]
    assert json.loads(shown)["data"]["generate"]["seedSource"] == "derived"
    cli = subprocess.run(
        [
            sys.executable, "-m", "edgechain.cli", "generate", "--dir", str(network_dir),
            "--model", "stories260K", "-i", "Lily", "-t", "1.0", "-n", "20", "-s", seed,
            "--json",
        ],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    record = json.loads(cli.stdout)
    assert record["text"] == text and str(record["seed"]) == seed


def test_root_is_graphiql_on_the_chains_with_a_link_to_each_application(
    node: NodeProcess, browser: webdriver.Chrome, screenshots: Path
) -> None:
    open_graphiql(browser, node.base_url + "/")
    run_in_graphiql(browser, "{ chains { name blocks applications { graphql } } }")
    result = json.loads(wait_for_response(browser, '"applications"'))
    [chain] = result["data"]["chains"]
    assert chain["applications"] == [{"graphql": node.app_path}, {"graphql": node.story_path}]
    screenshot(browser, screenshots, "graphiql-chains")
    link = browser.find_element(By.CSS_SELECTOR, "#node-header a.graphiql")
    assert link.get_attribute("href") == node.graphql_url
    link.click()
    open_graphiql(browser, node.graphql_url)
    assert "model-registry" in browser.find_element(By.ID, "node-header").text


def test_graphiql_takes_variables_and_autocompletes(
    node: NodeProcess, browser: webdriver.Chrome
) -> None:
    open_graphiql(browser, node.graphql_url)
    variables = '{"name": "stories260K"}'
    set_editor(browser, ".graphiql-editor-tool", "variables", variables)
    run_in_graphiql(browser, "query ($name: String!) { model(name: $name) { name version } }")
    result = json.loads(wait_for_response(browser, '"version"'))
    assert result["data"]["model"] == {"name": "stories260K", "version": "1"}
    # Typing in the editor offers the schema's fields.
    browser.execute_script(
        "const cm = document.querySelector('.graphiql-query-editor .CodeMirror').CodeMirror;"
        "cm.setValue('{ mode'); cm.focus(); cm.setCursor(cm.lineCount(), 0);"
    )
    browser.find_element(By.CSS_SELECTOR, ".graphiql-query-editor textarea").send_keys("l")
    hints = WebDriverWait(browser, WAIT_S).until(
        lambda b: b.find_element(By.CSS_SELECTOR, ".CodeMirror-hints")
    )
    assert "models" in hints.text.split(), hints.text


def test_each_application_page_keeps_its_own_editor_state(
    node: NodeProcess, browser: webdriver.Chrome
) -> None:
    story_query = "{ stories { id owner } }"
    open_graphiql(browser, node.base_url + node.story_path)
    run_in_graphiql(browser, story_query)
    wait_for_response(browser, '"stories"')
    # The registry's page opens with its own document, not the story book's (which it could not
    # run: the registry has no `stories` field), and the chains' page with its own.
    for path in (node.app_path, "/"):
        open_graphiql(browser, node.base_url + path)
        assert editor_text(browser) != story_query
        registry_query = '{ model(name: "stories260K") { name } }' if path != "/" else (
            "{ chains { name } }"
        )
        run_in_graphiql(browser, registry_query)
        wait_for_response(browser, '"name"')
    # Back on the story book's page, its last query is still there.
    open_graphiql(browser, node.base_url + node.story_path)
    assert editor_text(browser) == story_query
    open_graphiql(browser, node.graphql_url)
    assert editor_text(browser) == '{ model(name: "stories260K") { name } }'
