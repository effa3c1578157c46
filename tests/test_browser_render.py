"""Hostile answers in a real browser (Debian chromium via Playwright), in every place a battle is
shown: the Arena before the vote, the revealed battle, the Label tab and the Data tab's battle view
(issue 18, items 1 and 5), and a page whose battle is replaced mid-stream (item 0).

Two stub contestants answer with every element of tests/test_render.py's ELEMENTS at once; the
addresses in them point at a recording server, so a remote image, a refresh or a form that fired
would show up there."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from openai_stub import StubEndpoint
from qwen3arena.campaigns import CampaignPrompt
from test_arena_pages import stub_app
from test_browser import browser  # noqa: F401 (the shared chromium fixture)
from test_render import ELEMENTS

VIEWS = ("arena", "revealed", "label", "data")
PANES = {"arena": ("#chat-a", "#chat-b"), "revealed": ("#chat-a", "#chat-b"),
         "label": ("#label-chat-a", "#label-chat-b"), "data": ("#data-chat-a", "#data-chat-b")}


class Tracker:
    """Records every request a page makes to the contestant's own address."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        tracker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _record(self):
                tracker.hits.append(f"{self.command} {self.path}")
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = _record

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_COUNT = """([panes, selectors]) => {
    const scopes = panes.flatMap(p => Array.from(document.querySelectorAll(p + " [data-testid='bot'] .message-content")));
    const counts = {};
    for (const [name, selector] of Object.entries(selectors))
        counts[name] = scopes.reduce((n, el) => n + el.querySelectorAll(selector).length, 0);
    counts["(bot messages)"] = scopes.length;
    counts["(visible buttons)"] = panes.flatMap(p => Array.from(document.querySelectorAll(p + " button")))
        .filter(b => b.offsetParent !== null).map(b => b.getAttribute("aria-label") || b.innerText);
    counts["(pwned)"] = window.__pwned || null;
    return counts;
}"""


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    tracker = Tracker()
    document = "\n\n".join(e.text(tracker.url) for e in ELEMENTS)
    stubs = [StubEndpoint(document, model="hostile-left"), StubEndpoint(document, model="hostile-right")]
    try:
        with stub_app(tmp_path_factory.mktemp("hostile"), stubs) as (runtime, url):
            yield runtime, url, tracker, stubs
    finally:
        for stub in stubs:
            stub.close()
        tracker.close()


@pytest.fixture(scope="module")
def rendered(browser, hostile):  # noqa: F811
    """Per view: how many of each element the two panes hold, which buttons they show, and
    whether a script ran. One battle is played, voted, labelled and read back."""
    runtime, url, tracker, _ = hostile
    selectors = {e.name: e.selector for e in ELEMENTS}
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    seen: dict[str, dict] = {}

    def count(view: str) -> None:
        page.wait_for_timeout(500)  # let the panes finish drawing
        seen[view] = page.evaluate(_COUNT, [list(PANES[view]), selectors])

    try:
        page.goto(url)
        page.locator("#prompt textarea").fill("Show me everything you can write.")
        page.locator("#send").click()
        page.locator("#vote-model-a").wait_for(state="visible", timeout=60_000)
        count("arena")
        page.locator("#vote-model-a").click()
        page.locator("text=Thanks for voting").wait_for(timeout=30_000)
        count("revealed")

        (vote,) = runtime.store.list_votes()
        page.get_by_role("tab", name="Data").click()
        field = page.locator("#data-battle-id textarea, #data-battle-id input").first
        field.wait_for(timeout=30_000)
        field.fill(vote.battle_id)
        field.press("Enter")
        page.wait_for_function("document.querySelectorAll(\"#data-chat-a [data-testid='bot']\").length > 0",
                               timeout=30_000)
        count("data")

        runtime.campaigns.create("hostile answers", [CampaignPrompt("h1", "Show me everything.")],
                                 ["hostile-left", "hostile-right"], runtime.pool.names(), reasons=["clearer"])
        page.get_by_role("tab", name="Label").click()
        page.locator("#label-rubric").get_by_text("Rubric").wait_for(timeout=30_000)
        page.locator("#label-next").click()
        page.locator("#label-vote-model-a").wait_for(state="visible", timeout=60_000)
        count("label")
        page.screenshot(path=str(runtime.settings.home / "hostile-label.png"), full_page=True)
    finally:
        page.close()
    return seen, list(tracker.hits)


@pytest.mark.parametrize("element", ELEMENTS, ids=[e.name for e in ELEMENTS])
def test_every_view_shows_only_the_allow_list(rendered, element):
    seen, _ = rendered
    for view in VIEWS:
        counts = seen[view]
        assert counts["(bot messages)"] >= 2, f"{view}: both answers are shown"
        if element.allowed:
            assert counts[element.name] >= 2, f"{view}: {element.name} is shown in both answers"
        else:
            assert counts[element.name] == 0, f"{view}: {element.name} reached the page"


def test_nothing_ran_loaded_or_submitted(rendered):
    seen, hits = rendered
    assert {view: seen[view]["(pwned)"] for view in VIEWS} == dict.fromkeys(VIEWS), "a script ran"
    assert hits == [], f"the page reached the contestant's address: {hits}"


def test_battle_chats_show_no_editing_control(rendered):
    """No trash icon (it emptied side A mid-battle), edit, retry, undo, like or copy button."""
    seen, _ = rendered
    assert {view: seen[view]["(visible buttons)"] for view in VIEWS} == {view: [] for view in VIEWS}


def test_new_round_while_answers_stream_never_brings_the_old_battle_back(browser, hostile):  # noqa: F811
    runtime, url, _, stubs = hostile
    for stub in stubs:
        stub.delay_s = 0.03  # about 8 s an answer
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    votes = len(runtime.store.list_votes())
    try:
        page.goto(url)
        prompt = page.locator("#prompt textarea")
        prompt.fill("First question")
        page.locator("#send").click()
        page.wait_for_function("document.querySelectorAll(\"#chat-a [data-testid='bot']\").length > 0",
                               timeout=30_000)
        # a message sent while both models answer is refused out loud, and stays in the box
        prompt.fill("Second question")
        prompt.press("Enter")
        page.get_by_text("Both models are still answering").first.wait_for(timeout=10_000)
        assert prompt.input_value() == "Second question"
        page.wait_for_timeout(500)
        assert prompt.input_value() == "Second question", "a later frame must not wipe what was typed"

        page.locator("#new-round").click()
        page.wait_for_timeout(12_000)  # past the end of the old answers
        assert page.locator("#chat-a [data-testid='bot']").count() == 0, "the old battle came back"
        assert page.locator("#chat-a [data-testid='user']").count() == 0
        assert page.locator("#vote-row").is_hidden()
        assert "Both answers are complete" not in page.locator("#arena-status").inner_text()
        assert len(runtime.store.list_votes()) == votes
    finally:
        for stub in stubs:
            stub.delay_s = 0.0
        page.close()
