"""Undo and repair in a real browser (Debian chromium via Playwright), stub contestants: vote,
undo, vote again, repair the preferred answer, see the names only once the undo window has
closed, then find the repair in the Data tab (rendered safely) and in the next round's files
(issue 15, sections 3 and 1)."""

from __future__ import annotations

import json

import pytest

from openai_stub import StubEndpoint
from test_arena_pages import stub_app
from test_browser import browser  # noqa: F401 (the shared chromium fixture)

NAMES = ("stub-left-model", "stub-right-model")
REPAIR = "Keep it **dry**, in an airtight jar. <img src=x onerror=\"window.__pwned=1\">"


@pytest.fixture
def app(tmp_path):
    stubs = [StubEndpoint("Keep it in a cool, dry place.", model=NAMES[0]),
             StubEndpoint("Refrigerate it within two hours.", model=NAMES[1])]
    try:
        with stub_app(tmp_path, stubs) as started:
            yield started
    finally:
        for stub in stubs:
            stub.close()


def _leaks(text: str) -> list[str]:
    return [n for n in NAMES if n in text]


def test_vote_undo_vote_again_repair_and_find_the_repair_in_data_and_round(browser, app):  # noqa: F811
    runtime, url = app
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        page.goto(url)
        page.locator("#prompt textarea").fill("How should I store rice?")
        page.locator("#send").click()
        page.locator("#vote-model-a").wait_for(state="visible", timeout=60_000)
        page.locator("#vote-model-a").click()
        page.locator("#arena-status").get_by_text("Recorded").wait_for(timeout=30_000)
        assert page.locator("#vote-undo").is_visible() and page.locator("#vote-row").is_hidden()
        assert _leaks(page.content()) == [], "no name while the vote may be undone"
        (battle,) = [v.battle_id for v in runtime.store.list_votes()]

        page.locator("#vote-undo").click()
        page.locator("#arena-status").get_by_text("was undone").wait_for(timeout=30_000)
        page.locator("#vote-model-b").wait_for(state="visible", timeout=10_000)
        assert runtime.store.get_vote(battle) is None and _leaks(page.content()) == []

        page.locator("#vote-model-b").click()
        page.locator("#arena-status").get_by_text("Recorded").wait_for(timeout=30_000)
        box = page.locator("#repair-text textarea")
        box.wait_for(state="visible", timeout=10_000)
        preferred = runtime.store.get_battle(battle).conversation_b[-1]["content"]
        assert box.input_value() == preferred, "the repair starts from the preferred answer"
        box.fill(REPAIR)
        page.locator("#repair-save").click()
        page.locator("#repair-status").get_by_text("Saved your answer").wait_for(timeout=30_000)
        # the window closes by itself (arena.undo_window_s, 5 s): the names come, the undo goes
        page.get_by_text("Thanks for voting").wait_for(timeout=30_000)
        assert _leaks(page.locator("#arena-status").inner_text())
        assert page.locator("#vote-undo").is_hidden()
        vote = runtime.store.get_vote(battle)
        assert vote.final() and (vote.outcome, vote.repair, vote.repair_original) == ("model_b", REPAIR, preferred)

        page.get_by_role("tab", name="Data").click()
        field = page.locator("#data-battle-id textarea, #data-battle-id input").first
        field.wait_for(timeout=30_000)
        field.fill(battle)
        field.press("Enter")
        page.wait_for_function(
            "(document.querySelector('#data-repair')?.innerText || '').includes('in an airtight jar')",
            timeout=30_000)
        assert page.locator("#data-repair strong").inner_text() == "dry", "markdown shown"
        assert page.locator("#data-repair img").count() == 0 and page.evaluate("window.__pwned || null") is None
        assert "Repaired by" in page.get_by_text("Repaired by").first.inner_text()

        number = runtime.harvester.next_round()
        page.locator("#data-build").click()
        page.wait_for_function(
            "n => (document.querySelector('#data-round-message')?.innerText || '').includes(`Round ${n} built`)",
            arg=number, timeout=60_000)
        record = runtime.harvester.get_round(number)
        sft = [json.loads(line) for line in record.sft_path.read_text().splitlines()]
        pairs = [json.loads(line) for line in record.preference_path.read_text().splitlines()]
        assert [row["messages"][-1]["content"] for row in sft] == [REPAIR]
        assert {p["rejected"][0]["content"] for p in pairs} == {
            preferred, runtime.store.get_battle(battle).conversation_a[-1]["content"]}
        assert {p["chosen"][0]["content"] for p in pairs} == {REPAIR}
        assert record.vote_ids == [vote.vote_id], "the undone vote is in no round"
    finally:
        page.close()
