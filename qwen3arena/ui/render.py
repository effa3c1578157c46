"""Model output as the page may show it: the markdown a chat needs, and nothing that acts.

An answer (or a prompt, or anything a contestant wrote) reaches the browser only as HTML made
here, never as markdown for the browser to interpret: Gradio's own renderer passes raw HTML
through, so an answer could show a working form, a button, a meta refresh, or load a remote
image (a tracking pixel that tells the contestant who is voting, before the vote).

How: markdown-it (CommonMark plus tables and strikethrough) with raw HTML off, so any tag in
the text is shown as text; then every element is checked against ALLOWED (tag -> attributes it
may keep); anything else is dropped, its text kept. The decisions:

* Images never load: `![alt](url)` becomes a link labelled "image (not loaded)".
* Links stay clickable, since a click is the reader's own act (nothing navigates by itself):
  only http, https and mailto addresses, opened in a new tab with no referrer and no opener.
  Relative links (into the app itself: /logout, the API) are shown as text.
* No class, id, style (but a table cell's text-align), event handler or other attribute
  survives, so nothing can hook into the page's own scripts (Gradio's mermaid or KaTeX).
* No form, button, input, select, textarea, iframe, object, embed, meta, link, base, script,
  style, svg, math, video, audio, img, or details: not in ALLOWED.

safe_chatbot() makes the chat pane that applies this to every message it is given (the Arena,
Label and Data tabs use it); it shows no editing control (see its docstring).
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
from markdown_it import MarkdownIt

# tag -> the attributes it may keep (each checked again by _attribute_ok)
ALLOWED: dict[str, frozenset[str]] = {
    **{tag: frozenset() for tag in (
        "p", "br", "hr", "em", "strong", "s", "code", "pre", "ul", "li", "blockquote",
        "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr")},
    "ol": frozenset({"start"}),
    "th": frozenset({"style"}),
    "td": frozenset({"style"}),
    "a": frozenset({"href", "title"}),
}
VOID = frozenset({"br", "hr"})
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# what every kept link gets: a new tab, no window.opener, no Referer header
LINK_ATTRIBUTES = ' target="_blank" rel="noopener noreferrer nofollow" referrerpolicy="no-referrer"'
# elements whose content is dropped with them (markdown-it never emits them; a second guard)
_DROP_CONTENT = frozenset({"script", "style", "template", "iframe", "object", "embed", "noscript",
                           "textarea", "select", "svg", "math", "head", "title"})
_ALIGN = re.compile(r"text-align:(left|center|right)")

_md = MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(["table", "strikethrough"])


def safe_url(url: str | None) -> bool:
    """An absolute http(s) or mailto address (nothing relative, no other scheme)."""
    if not url:
        return False
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return False
    if parts.scheme.lower() not in URL_SCHEMES:
        return False
    return parts.scheme.lower() == "mailto" or bool(parts.netloc)


def _image(renderer: Any, tokens: list, idx: int, options: Any, env: Any) -> str:
    """An image as a link to it, never loaded by the page."""
    token = tokens[idx]
    alt = renderer.renderInlineAsText(token.children or [], options, env)
    label = "[image, not loaded" + (f": {alt}]" if alt else "]")
    src = str(token.attrGet("src") or "")
    if safe_url(src):
        return f'<a href="{html.escape(src)}">{html.escape(label)}</a>'
    return html.escape(label)


_md.add_render_rule("image", _image)


def _attribute_ok(tag: str, name: str, value: str) -> bool:
    if name not in ALLOWED.get(tag, ()):
        return False
    if name == "href":
        return safe_url(value)
    if name == "style":
        return bool(_ALIGN.fullmatch(value.replace(" ", "").rstrip(";")))
    if name == "start":
        return value.isdigit() and len(value) <= 9
    return True


class _AllowList(HTMLParser):
    """Re-emits HTML keeping only ALLOWED elements and attributes; all text is escaped."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []       # kept elements still open
        self.dropping = 0               # depth inside an element dropped with its content

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _DROP_CONTENT:
            self.dropping += 1
            return
        if self.dropping or tag not in ALLOWED:
            return
        kept = "".join(f' {name}="{html.escape(value or "")}"' for name, value in attrs
                       if _attribute_ok(tag, name, value or ""))
        if tag == "a":
            if 'href="' not in kept:
                return  # a link to nowhere allowed: its text only
            kept += LINK_ATTRIBUTES
        self.out.append(f"<{tag}{kept}>")
        if tag not in VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID and not self.dropping:
            self.out.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in _DROP_CONTENT:
            self.dropping = max(0, self.dropping - 1)
            return
        if self.dropping or tag not in self.open:
            return
        while self.open:  # close what was left open inside it
            name = self.open.pop()
            self.out.append(f"</{name}>")
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        return "".join(self.out) + "".join(f"</{name}>" for name in reversed(self.open))


def sanitize_html(markup: str) -> str:
    """HTML keeping only the ALLOWED elements and attributes (text escaped, the rest dropped)."""
    parser = _AllowList()
    parser.feed(markup)
    return parser.result()


@functools.lru_cache(maxsize=256)  # a streamed battle redraws its finished messages every frame
def render_message(text: str) -> str:
    """Markdown from a model (or a person) as HTML that shows it and can do nothing else."""
    return sanitize_html(_md.render(text or "")).strip()


def safe_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages with their text rendered by render_message (a thinking block's title too);
    a message whose content is not text shows a placeholder."""
    safe = []
    for message in messages:
        content = message.get("content")
        rendered = render_message(content) if isinstance(content, str) else "<p>[content not shown]</p>"
        item: dict[str, Any] = {"role": message.get("role"), "content": rendered}
        metadata = message.get("metadata")
        if isinstance(metadata, Mapping):
            item["metadata"] = {key: html.escape(str(value)) if key == "title" else value
                                for key, value in metadata.items() if key in ("title", "status")}
        safe.append(item)
    return safe


def code_span(text: str) -> str:
    """`text` as one markdown code span whatever backticks it holds (a model name in a reveal)."""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}"


# Gradio 6.31's Chatbot draws a trash icon (it empties the browser's copy of the chat) with no
# option to hide it; the battle panes hide their toolbar (safe_chatbot has no share or copy-all
# button, so the trash icon is all it holds).
HIDE_CHAT_TOOLBAR = "<style>.safe-chat .icon-button-wrapper.top-panel { display: none !important; }</style>"


SAFE_CHAT = "safe-chat"  # the class that marks a safe_chatbot pane (and hides its toolbar)
# the unpatched method, even if this module is imported again (gradio's reload mode)
_chatbot_postprocess = getattr(gr.Chatbot.postprocess, "__wrapped__", gr.Chatbot.postprocess)


def _safe_postprocess(self: gr.Chatbot, value: Any) -> Any:
    """gr.Chatbot.postprocess, rendering every message with render_message first in a safe pane.

    On the class, not the instance: Gradio answers a gr.update(...) of a component (a new label,
    visibility) by building a fresh gr.Chatbot from its constructor arguments and keeps that copy
    for the session, so every later value of the pane goes through the copy. An instance override
    would be lost there (the pane would then send the browser raw text for Gradio to show as
    HTML, images and all); this check is not, since the copy keeps the pane's classes."""
    if SAFE_CHAT in (self.elem_classes or ()) and isinstance(value, (list, tuple)):
        value = safe_messages(value)
    return _chatbot_postprocess(self, value)


_safe_postprocess.__wrapped__ = _chatbot_postprocess  # type: ignore[attr-defined]
gr.Chatbot.postprocess = _safe_postprocess  # type: ignore[method-assign]


def safe_chatbot(*, elem_classes: list[str] | str | None = None, **kwargs: Any) -> gr.Chatbot:
    """A read-only chat pane for battles: every message it is given passes through
    render_message on the server (the browser is sent finished, safe HTML and renders no markdown
    of its own, no LaTeX), and it has no editing control: no edit, retry, undo, like or copy
    button, and its toolbar (the trash icon) is hidden by HIDE_CHAT_TOOLBAR, which the tab places
    once with chat_styles(). Panes are outputs only: the server's conversation is the only one.

    A configured Chatbot (marked by the SAFE_CHAT class, which _safe_postprocess looks for)
    rather than a subclass: Gradio writes a .pyi file beside the module of every component
    subclass."""
    classes = [elem_classes] if isinstance(elem_classes, str) else list(elem_classes or [])
    kwargs.update(render_markdown=False, sanitize_html=True, latex_delimiters=[], allow_tags=False,
                  buttons=[], editable=None, feedback_options=None, allow_file_downloads=False)
    return gr.Chatbot(elem_classes=[*classes, SAFE_CHAT], **kwargs)


def chat_styles() -> gr.HTML:
    """The page style that hides the battle panes' toolbar (place once per tab that has them)."""
    return gr.HTML("", head=HIDE_CHAT_TOOLBAR, container=False, padding=False, elem_classes=["chat-styles"])


__all__ = ["ALLOWED", "URL_SCHEMES", "chat_styles", "code_span", "render_message", "safe_chatbot",
           "safe_messages", "safe_url", "sanitize_html"]
