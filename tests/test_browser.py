"""A real browser (Debian chromium driven by Playwright) plays a battle and votes.

Before the vote no contestant name may appear in the DOM or in any HTTP response or
streamed event the page received; after the vote both names are revealed."""

from __future__ import annotations

import shutil

import pytest

from conftest import CONTESTANTS, seed_unfinished_votes

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [n for n in CONTESTANTS if n in lowered]


def test_a_blind_battle_in_the_browser(browser, app_url, runtime):
    page = browser.new_page()
    seen: list[tuple[str, str]] = []

    def record(response):
        try:
            seen.append((response.url, response.text()))
        except Exception:  # streamed bodies are captured below through the event log
            seen.append((response.url, ""))

    page.on("response", record)
    # capture the server-sent events the queue streams to the page, chunk by chunk
    page.add_init_script("""
        window.__events = [];
        const orig = window.fetch.bind(window);
        window.fetch = async (input, init) => {
            const url = typeof input === 'string' ? input : (input.url || String(input));
            const res = await orig(input, init);
            if (res.body && url.includes('/queue/data')) {
                const [mine, theirs] = res.body.tee();
                const reader = theirs.getReader(); const dec = new TextDecoder();
                (async () => { for (;;) { const {done, value} = await reader.read(); if (done) break;
                    window.__events.push(dec.decode(value)); } })();
                return new Response(mine, {headers: res.headers, status: res.status, statusText: res.statusText});
            }
            return res;
        };
    """)
    page.goto(app_url)
    page.get_by_placeholder("Type your message and press Enter").fill("How should I store onions?")
    page.locator("#send").click()
    vote = page.locator("#vote-model-a")
    vote.wait_for(state="visible", timeout=120_000)
    page.wait_for_function("document.querySelectorAll('#chat-a .message').length >= 2", timeout=60_000)
    dom = page.content()
    events = "\n".join(page.evaluate("window.__events"))
    assert "Both answers are complete" in dom
    assert _leaks(dom) == [], "a name in the DOM before the vote"
    assert _leaks(events) == [], "a name in the event stream before the vote"
    leaking = [url for url, body in seen if _leaks(body)]
    assert leaking == [], f"a name in responses before the vote: {leaking}"
    assert "process_generating" in events, "the streamed answers were captured"
    votes_before = len(runtime.store.list_votes())
    vote.click()
    reveal = page.locator("text=Thanks for voting")
    reveal.wait_for(timeout=30_000)
    after = page.content()
    assert len(_leaks(after)) >= 1
    assert page.locator("#vote-row").is_hidden()
    assert len(runtime.store.list_votes()) == votes_before + 1
    # a new round draws a new pair, with the names hidden again
    page.locator("#new-round").click()
    page.wait_for_function("!document.body.innerText.includes('Thanks for voting')", timeout=30_000)
    assert _leaks(page.locator("#chat-a").inner_text() + page.locator("#chat-b").inner_text()) == []
    page.close()


def test_a_training_run_from_the_train_tab(browser, app_url, runtime):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(app_url)
    page.get_by_role("tab", name="Train").click()
    page.wait_for_function(
        "document.querySelector('#train-base input') && document.querySelector('#train-base input').value.length > 0",
        timeout=30_000)
    page.locator("#train-name textarea, #train-name input").first.fill("browser-run")
    page.get_by_text("Hyperparameters").click()
    page.locator("#train-batching").get_by_label("Grouped by length").check()
    steps = page.locator("#train-max-steps input").first
    steps.fill("12")
    page.get_by_label("Join the arena when the run finishes").uncheck()
    page.locator("#train-preview").click()
    page.locator("text=rows, all valid").wait_for(timeout=60_000)
    # the preview measures the conversations (tokens, cuts at max length, padding)
    page.locator("text=Tokens per conversation: median").first.wait_for(timeout=10_000)
    page.locator("#train-start").click()
    page.locator("text=queued").first.wait_for(timeout=30_000)
    page.locator("#train-status").get_by_text("succeeded").wait_for(timeout=300_000)
    status = page.locator("#train-status").inner_text()
    assert "step 12/12" in status
    # the loss curve is drawn (a vega chart with a line mark)
    page.locator("#train-loss canvas, #train-loss svg").first.wait_for(timeout=30_000)
    page.locator("#checkpoints-refresh").click()
    page.wait_for_function(
        "() => (document.querySelector('#checkpoints')?.innerText || '').includes('browser-run')", timeout=30_000)
    assert runtime.store.get_model("browser-run").kind == "adapter"
    run = next(r for r in runtime.runner.runs() if r.name == "browser-run")
    assert run.config["batching"] == "grouped", "the form's batching choice reached the run"
    page.screenshot(path=str(runtime.settings.home / "train-tab.png"), full_page=True)
    page.close()


def test_the_scoreboard_tab(browser, app_url, runtime):
    battle = runtime.arena.start_battle("anon:browser-board")
    list(runtime.arena.play_turn(battle, "Can I freeze apples?"))
    reveal = runtime.arena.vote(battle, "model_b", "anon:browser-board")
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.goto(app_url)
    page.get_by_role("tab", name="Scoreboard").click()
    page.wait_for_function(
        "name => (document.querySelector('#board-table')?.innerText || '').includes(name)",
        arg=reveal.model_b, timeout=60_000)
    assert "votes rated" in page.locator("#board-notes").inner_text()
    # the three plots are drawn
    page.wait_for_function("document.querySelectorAll('img, svg').length > 3", timeout=30_000)
    # style control adds its column, its note and a second set of intervals to the plot
    seed_unfinished_votes(runtime.store, reveal.model_a, reveal.model_b, "browser-style")  # it needs 30 votes
    page.locator("#board-style input").check()
    page.locator("#board-refresh").click()
    page.wait_for_function("(document.querySelector('#board-table')?.innerText || '').includes('style-controlled')",
                           timeout=60_000)
    assert "Style control: ratings at equal answer length" in page.locator("#board-notes").inner_text()
    page.screenshot(path=str(runtime.settings.home / "scoreboard-tab.png"), full_page=True)
    page.close()


def test_the_data_tab(browser, app_url, runtime):
    """An admin reads a voted battle, leaves it out of the harvest and previews the next round."""
    battle = runtime.arena.start_battle("anon:browser-data")
    list(runtime.arena.play_turn(battle, "How should I store carrots?"))
    runtime.arena.vote(battle, "model_a", "anon:browser-data")
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    page.goto(app_url)
    page.get_by_role("tab", name="Data").click()
    page.wait_for_function(
        "id => (document.querySelector('#data-battles')?.innerText || '').includes(id)", arg=battle,
        timeout=60_000)
    page.locator("#data-battle-id textarea, #data-battle-id input").first.fill(battle)
    page.locator("#data-battle-id textarea, #data-battle-id input").first.press("Enter")
    page.wait_for_function(
        "(document.querySelector('#data-chat-b')?.innerText || '').includes('How should I store carrots?')",
        timeout=30_000)
    page.locator("#data-exclude").click()
    page.get_by_text("is left out of every future round").wait_for(timeout=30_000)
    assert runtime.harvester.battle(battle).battle.excluded
    page.locator("#data-preview").click()
    page.wait_for_function(
        "(document.querySelector('#data-round-message')?.innerText || '').includes('would hold')", timeout=60_000)
    message = page.locator("#data-round-message").inner_text()
    assert "excluded: excluded by hand" in message
    page.locator("#data-lineage-plot img, #data-lineage-plot svg, #data-lineage-plot canvas").first.wait_for(
        timeout=30_000)
    runtime.harvester.include(battle)
    # build the next round, then "Train this round" fills the Train tab
    number = runtime.harvester.next_round()
    page.locator("#data-build").click()
    page.wait_for_function(
        "n => (document.querySelector('#data-round-message')?.innerText || '').includes(`Round ${n} built`)",
        arg=number, timeout=60_000)
    record = runtime.harvester.get_round(number)
    page.locator("#data-train").click()
    name = page.locator("#train-name textarea, #train-name input").first
    name.wait_for(state="visible", timeout=30_000)
    page.wait_for_function(
        "n => (document.querySelector('#train-name textarea, #train-name input')?.value || '') === n",
        arg=f"round{number}-sft", timeout=30_000)
    assert page.locator("#train-dataset input").first.input_value() == str(record.sft_path)
    assert "filled in" in page.locator("#train-message").inner_text()
    page.screenshot(path=str(runtime.settings.home / "data-tab.png"), full_page=True)
    page.close()
