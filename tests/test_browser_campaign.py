"""A labeller works through a small campaign in a real browser: logs in, is served prompts
without typing, votes with a reason chip, sees progress move, comes back to the same prompt
after leaving mid-battle, and never sees a model name."""

from __future__ import annotations

import pytest

from conftest import CONTESTANTS
from qwen3arena.campaigns import load_shipped
from test_access_api import PASSWORD, _launch
from test_browser import browser  # noqa: F401 (the shared chromium fixture)


def _leaks(text: str) -> list[str]:
    return [n for n in CONTESTANTS if n in text.lower()]


@pytest.fixture(scope="module")
def campaign(runtime):
    for other in runtime.campaigns.list_campaigns("open"):
        runtime.campaigns.set_status(other.campaign_id, "closed")
    return runtime.campaigns.create("browser-campaign", load_shipped("kitchen.txt")[:2], list(CONTESTANTS),
                                    runtime.pool.names(), votes_per_prompt=1, overlap=1,
                                    rubric="Prefer the safer storage advice.", reasons=["safer", "clearer"])


def test_a_labeller_works_through_a_campaign(browser, runtime, campaign):  # noqa: F811
    demo, url = _launch(runtime, public=False)
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    seen: list[str] = []
    page.on("response", lambda r: seen.append(_safe_text(r)))
    try:
        page.goto(url)
        page.locator("#username").fill("lena")
        page.locator("#password").fill(PASSWORD)
        page.locator("#login").click()
        page.locator("text=Logged in as").wait_for(timeout=30_000)
        assert page.get_by_role("tab", name="Label").is_visible()
        assert page.get_by_role("tab", name="Scoreboard").count() == 0 or \
            not page.get_by_role("tab", name="Scoreboard").is_visible()

        def open_label_tab() -> None:
            page.get_by_role("tab", name="Label").click()
            page.locator("#label-rubric").get_by_text("safer storage advice").wait_for(timeout=30_000)

        def serve() -> str:
            page.locator("#label-next").click()
            page.locator("#label-vote-model-a").wait_for(state="visible", timeout=120_000)
            page.wait_for_function("document.querySelectorAll('#label-chat-b .message').length >= 2",
                                   timeout=60_000)
            return page.locator("#label-status").inner_text()

        open_label_tab()
        first = serve()
        assert "kitchen-1" in first
        # the labeller leaves mid-battle (reload: a new session) and comes back to the same prompt
        page.reload()
        open_label_tab()
        assert "kitchen-1" in serve()
        for done in (1, 2):
            assert _leaks(page.content()) == [], "a model name in the page before the vote"
            page.locator("#label-reason").get_by_text("clearer").click()
            page.locator("#label-comment textarea").fill(f"note {done}")
            page.locator("#label-vote-model-a").click()
            page.locator("#label-status").get_by_text("Saved").wait_for(timeout=30_000)
            page.locator("#label-progress").get_by_text(f"{done} judged").wait_for(timeout=30_000)
            assert _leaks(page.content()) == [], "names stay hidden after a campaign vote"
            if done == 1:
                assert "kitchen-2" in serve()
        page.locator("#label-next").click()
        page.locator("#label-status").get_by_text("Nothing left").wait_for(timeout=30_000)
        assert [u for u in seen if _leaks(u)] == [], "a model name in a response"
        votes = [v for v in runtime.store.list_votes() if v.campaign_id == campaign.campaign_id]
        assert sorted((v.voter, v.reason, v.comment) for v in votes) == [
            ("user:lena", "clearer", "note 1"), ("user:lena", "clearer", "note 2")]
        assert {runtime.store.get_battle(v.battle_id).prompt_id for v in votes} == {"kitchen-1", "kitchen-2"}
        page.screenshot(path=str(runtime.settings.home / "label-tab.png"), full_page=True)
    finally:
        page.close()
        demo.close()


def _safe_text(response) -> str:
    try:
        return response.text()
    except Exception:  # streamed or binary bodies
        return ""
