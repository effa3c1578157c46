"""The sanitizer every chat pane uses (qwen3arena/ui/render.py), without a browser: the markdown a
chat needs is kept, nothing that acts survives (issue 18, item 1). ELEMENTS is the allow-list as a
table; tests/test_browser_render.py checks the same table in a real browser."""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from qwen3arena.ui.render import (
    ALLOWED, LINK_ATTRIBUTES, code_span, render_message, safe_chatbot, sanitize_html,
)

TRACKER = "http://tracker.invalid"  # the browser test puts a live recording server here


@dataclass(frozen=True)
class Element:
    name: str
    source: str         # what a contestant writes ({host}: an address it controls)
    selector: str       # CSS selector for it inside a rendered message (the browser test)
    allowed: bool       # shown as that element (True) or never present (False)
    tags: tuple[str, ...]  # element names the selector means (checked here without a browser)

    def text(self, host: str = TRACKER) -> str:
        return self.source.replace("{host}", host)


ELEMENTS = [
    # the markdown a chat needs
    Element("heading", "## A heading", "h2", True, ("h2",)),
    Element("paragraph", "A plain paragraph.", "p", True, ("p",)),
    Element("emphasis", "some *slanted* text", "em", True, ("em",)),
    Element("strong", "some **bold** text", "strong", True, ("strong",)),
    Element("strikethrough", "~~struck~~ out", "s", True, ("s",)),
    Element("inline code", "run `x < y` now", "code", True, ("code",)),
    Element("code block", "```python\nprint('<b>hi</b>')\n```", "pre > code", True, ("pre", "code")),
    Element("bullet list", "- one\n- two", "ul > li", True, ("ul", "li")),
    Element("numbered list", "3. three\n4. four", "ol[start='3'] > li", True, ("ol", "li")),
    Element("table", "| left | right |\n|:--|--:|\n| 1 | 2 |", "table td", True, ("table", "td")),
    Element("blockquote", "> quoted words", "blockquote", True, ("blockquote",)),
    Element("rule", "above\n\n---\n\nbelow", "hr", True, ("hr",)),
    Element("line break", "line one\nline two", "br", True, ("br",)),
    Element("link (new tab, no referrer)", "[the docs](https://example.invalid/docs)",
            "a[href='https://example.invalid/docs'][target='_blank'][rel~='noopener'][rel~='noreferrer']",
            True, ("a",)),
    Element("autolink", "<https://example.invalid/auto>", "a[href='https://example.invalid/auto']", True, ("a",)),
    Element("mail link", "[write](mailto:someone@example.invalid)", "a[href^='mailto:']", True, ("a",)),
    # anything that submits, navigates by itself, loads from elsewhere, or runs
    Element("form and button", '<form action="{host}/phish" method="post"><button>Claim your prize</button></form>',
            "form, button", False, ("form", "button")),
    Element("input", '<input name="q" value="typed">', "input", False, ("input",)),
    Element("textarea", "<textarea>some text</textarea>", "textarea", False, ("textarea",)),
    Element("select", "<select><option>one</option></select>", "select, option", False, ("select", "option")),
    Element("meta refresh", '<meta http-equiv="refresh" content="0;url={host}/meta">', "meta", False, ("meta",)),
    Element("base", '<base href="{host}/">', "base", False, ("base",)),
    Element("stylesheet", '<link rel="stylesheet" href="{host}/style.css">', "link", False, ("link",)),
    Element("style", "<style>* { display: none }</style>", "style", False, ("style",)),
    Element("script", "<script>window.__pwned = 'script'</script>", "script", False, ("script",)),
    Element("iframe", '<iframe src="{host}/frame"></iframe>', "iframe", False, ("iframe",)),
    Element("object and embed", '<object data="{host}/object"></object><embed src="{host}/embed">',
            "object, embed", False, ("object", "embed")),
    Element("html image (tracking pixel)", '<img src="{host}/pixel-html.png" onerror="window.__pwned = \'img\'">',
            "img", False, ("img",)),
    Element("markdown image (tracking pixel)", "![pixel]({host}/pixel-md.png)", "img", False, ("img",)),
    Element("svg", '<svg onload="window.__pwned = \'svg\'"><image href="{host}/svg.png"/></svg>', "svg", False,
            ("svg", "image")),
    Element("video and audio", '<video src="{host}/v.mp4" autoplay></video><audio src="{host}/a.mp3" autoplay></audio>',
            "video, audio", False, ("video", "audio")),
    Element("details", "<details open><summary>more</summary>inside</details>", "details, summary", False,
            ("details", "summary")),
    Element("javascript link", "[click me](javascript:window.__pwned='link')", "a[href^='javascript']", False,
            ("a",)),
    Element("data link", "[open me](data:text/html;base64,PHNjcmlwdD4=)", "a[href^='data']", False, ("a",)),
    Element("relative link (into the app)", "[log out](/logout)", "a[href='/logout']", False, ("a",)),
    Element("event handler", '<a href="https://example.invalid" onclick="window.__pwned = \'onclick\'">x</a>',
            "[onclick]", False, ("a",)),
    Element("mermaid diagram", "```mermaid\ngraph TD; A-->B\n```", ".mermaid, svg", False, ("svg",)),
    Element("class hook", '<span class="mermaid">graph TD; A-->B</span>', ".mermaid", False, ("span",)),
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def tags_of(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(markup)
    return parser.found


def _only_allowed(markup: str) -> None:
    link_extra = {"target", "rel", "referrerpolicy"}
    for tag, attrs in tags_of(markup):
        assert tag in ALLOWED, f"<{tag}> is not in the allow-list"
        extra = set(attrs) - ALLOWED[tag] - (link_extra if tag == "a" else set())
        assert not extra, f"<{tag}> kept {extra}"


@pytest.mark.parametrize("element", ELEMENTS, ids=[e.name for e in ELEMENTS])
def test_the_allow_list(element: Element):
    markup = render_message(element.text())
    _only_allowed(markup)
    found = {tag for tag, _ in tags_of(markup)}
    if element.allowed:
        assert set(element.tags) <= found, markup
    else:
        links = [attrs.get("href") for tag, attrs in tags_of(markup) if tag == "a"]
        if element.tags == ("a",):  # a refused link keeps its words, never its address
            assert links == [], markup
        else:
            assert not set(element.tags) & found, markup


def test_refused_html_shows_as_the_text_it_is():
    markup = render_message('<form action="x"><button>Claim</button></form>')
    assert markup == '<p>&lt;form action="x"&gt;&lt;button&gt;Claim&lt;/button&gt;&lt;/form&gt;</p>'


def test_images_never_load_but_can_be_opened_on_purpose():
    markup = render_message("![a cat](https://img.invalid/cat.png)")
    assert "<img" not in markup
    assert '<a href="https://img.invalid/cat.png"' in markup and "[image, not loaded: a cat]" in markup
    assert render_message("![x](javascript:alert(1))") == "<p>![x](javascript:alert(1))</p>"  # text, no link


def test_links_open_in_a_new_tab_without_referrer_or_opener():
    markup = render_message("[docs](https://example.invalid)")
    assert markup == f'<p><a href="https://example.invalid"{LINK_ATTRIBUTES}>docs</a></p>'


@pytest.mark.parametrize("source", [
    "[x](JAVASCRIPT:alert(1))", "[x]( javascript:alert(1))", "[x](java\tscript:alert(1))",
    "[x](javascript&colon;alert(1))", "[x](vbscript:msgbox)", "[x](file:///etc/passwd)",
    "[x](//evil.invalid/path)", "[x](?next=/admin)", "<javascript:alert(1)>",
    "[x](data:image/png;base64,AAAA)",
])
def test_no_other_link_survives(source):
    markup = render_message(source)
    assert "href" not in markup, markup


@pytest.mark.parametrize("markup, expected", [
    ("<form action=x><button>b</button><input></form>", "b"),
    ("<script>alert(1)</script>after", "after"),
    ("<style>p{}</style><p>kept</p>", "<p>kept</p>"),
    ('<a href="javascript:alert(1)">x</a>', "x"),
    ('<a href="https://ok.invalid" onclick="y()" class="c">x</a>', f'<a href="https://ok.invalid"{LINK_ATTRIBUTES}>x</a>'),
    ('<td style="color:red">c</td>', "<td>c</td>"),
    ('<td style="text-align:right">c</td>', '<td style="text-align:right">c</td>'),
    ('<ol start="3 onclick=x">', "<ol></ol>"),
    ("<p><em>unclosed", "<p><em>unclosed</em></p>"),
    ("&lt;b&gt; stays text", "&lt;b&gt; stays text"),
    ("<svg><script>x()</script></svg>z", "z"),
    ("<div><span class='mermaid'>g</span></div>", "g"),
])
def test_the_allow_list_pass_on_raw_html(markup, expected):
    """A second guard: even HTML that markdown-it would never produce keeps only ALLOWED."""
    assert sanitize_html(markup) == expected


def test_the_chat_pane_renders_every_message_and_offers_no_editing():
    chat = safe_chatbot(label="Model A")
    config = chat.get_config()
    assert config["render_markdown"] is False and config["buttons"] == [] and config["latex_delimiters"] == []
    assert config["editable"] is None and not config["feedback_options"]
    assert "safe-chat" in config["elem_classes"]
    shown = chat.postprocess([
        {"role": "user", "content": "<b>hi</b>"},
        {"role": "assistant", "content": "x", "metadata": {"title": "<img src=x>", "status": "done"}},
        {"role": "assistant", "content": "![p](http://tracker.invalid/p.png)"},
    ])
    texts = [m.content[0].text if isinstance(m.content, list) else m.content.text for m in shown.root]
    # Gradio wraps text content in a text block
    assert texts[0] == "<p>&lt;b&gt;hi&lt;/b&gt;</p>"
    assert shown.root[1].metadata["title"] == "&lt;img src=x&gt;"
    assert "<img" not in texts[2]


def test_a_name_in_a_code_span_cannot_break_out():
    assert code_span("a`b") == "`` a`b ``"
    assert render_message(code_span("x`</code><form>")) == "<p><code>x`&lt;/code&gt;&lt;form&gt;</code></p>"


def test_importing_the_renderer_again_renders_a_safe_pane_once():
    """gradio's reload mode imports modules again: the pane must not escape its HTML twice."""
    import importlib

    import qwen3arena.ui.render as render

    pane = render.safe_chatbot()
    once = pane.postprocess([{"role": "assistant", "content": "a < b"}])
    importlib.reload(render)
    again = render.safe_chatbot().postprocess([{"role": "assistant", "content": "a < b"}])
    assert again == once and "&amp;lt;" not in str(again)
