"""Streaming chat through the `openai` client against any OpenAI-compatible server.

Errors become a ChatError subclass, one per kind of failure (timeout, unreachable server, HTTP
status, a reply that is not valid JSON or not a chat stream, an unfinished stream): callers tell
them apart by type (`kind`), never by wording. Each carries a public message that never names the
model (it is shown before the vote) and a detail kept for the store. Qwen3 thinking is kept apart
from the answer whether the server separates it (vLLM's reasoning parser: delta.reasoning) or not
(inline <think>...</think>). Answers are capped in characters and seconds, whatever the endpoint
does: a capped answer ends with finish_reason CUT_OFF (unfinished for the harvest).

An endpoint may have several replicas (servers of the same model): each request goes to one
(serve/balance.py: fewest requests in flight, round robin among equals), a replica that refuses
the connection is skipped and the next one tried at once (nothing was sent), and one that fails
in the middle of an answer fails that answer only and is skipped for its back-off. The public
messages are the same whichever replica failed: they name no server.
"""

from __future__ import annotations

import functools
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, Literal

import httpx2  # the HTTP client under openai 3.x (its errors surface mid-stream)
import openai

from qwen3arena.errors import Refused
from qwen3arena.config import GenerationParams
from qwen3arena.serve.balance import BALANCER

# finish_reason of an answer the arena stopped at its own cap (characters or seconds): never "stop",
# so the harvest treats it as unfinished (harvest.rules._complete)
CUT_OFF = "cut_off"
CutOff = Literal["chars", "time"]
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,40}/[a-z0-9][a-z0-9.+-]{0,60}")


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str = "EMPTY"
    # Every replica's base URL when the model is served by several servers (base_url is the
    # first); empty: base_url alone.
    replicas: tuple[str, ...] = ()
    # A replica that failed is skipped this long (doubled for each failure in a row).
    down_s: float = 10.0

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.replicas)) if self.replicas else (self.base_url,)


@dataclass
class Delta:
    """The answer and thinking so far (cumulative, ready to display)."""

    content: str
    reasoning: str


@dataclass
class ChatResult:
    content: str
    reasoning: str
    finish_reason: str | None
    ttft_s: float | None
    duration_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    cut_off: CutOff | None = None  # which cap stopped the answer (finish_reason is then CUT_OFF)

    def metrics(self) -> dict[str, Any]:
        return {
            "ttft_s": self.ttft_s, "duration_s": self.duration_s,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }


class ChatError(Refused, RuntimeError):
    """An answer failed. `public` is safe to show before the vote; `detail` is for the store."""

    def __init__(self, public: str, detail: str):
        super().__init__(detail)
        self.public = public
        self.detail = detail


class EndpointTimeout(ChatError):
    """No reply (or no further chunk) within the time allowed."""


class EndpointUnreachable(ChatError):
    """No connection to the server, or the connection broke off mid-answer."""


class EndpointBusy(ChatError):
    """HTTP 429: the server asks us to slow down."""


class EndpointRejected(ChatError):
    """An HTTP 4xx other than 429: the server refused this request."""

    def __init__(self, public: str, detail: str, status: int):
        super().__init__(public, detail)
        self.status = status


class EndpointFailed(ChatError):
    """An HTTP 5xx, or an error event in the middle of the stream."""

    def __init__(self, public: str, detail: str, status: int | None):
        super().__init__(public, detail)
        self.status = status


class MalformedReply(ChatError):
    """The server answered, but not with a chat completion stream (not JSON, or not its shape)."""


class UnfinishedStream(ChatError):
    """The stream ended without a finish reason: an unfinished answer is never judged."""


class UnexpectedFailure(ChatError):
    """A failure of our own code (a bug), not of the endpoint."""


def split_thinking(raw: str) -> tuple[str, str]:
    """(reasoning, answer) from text that may carry an inline <think> block."""
    stripped = raw.lstrip()
    if "</think>" in raw:
        before, after = raw.split("</think>", 1)
        return before.replace("<think>", "", 1).strip(), after.lstrip()
    if stripped.startswith("<think>"):
        return stripped[len("<think>"):].lstrip(), ""
    if stripped and "<think>".startswith(stripped):
        return "", ""  # the tag is still arriving
    return "", stripped


def classify(exc: BaseException, timeout_s: float, multi_turn: bool = False) -> ChatError:
    """The typed ChatError for a failure raised while talking to an endpoint (by type, never
    by the wording of its message). Its public text names no model."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return EndpointTimeout(f"the model server sent nothing for {timeout_s:g} s (timeout)", detail)
    if isinstance(exc, openai.APIConnectionError):
        if isinstance(exc.__cause__, httpx2.ConnectError):
            return EndpointUnreachable("could not reach the model server (connection refused or no server "
                                       "at that address)", detail)
        return EndpointUnreachable("could not reach the model server (the connection broke off)", detail)
    if isinstance(exc, openai.RateLimitError):
        return EndpointBusy("the model server is busy (HTTP 429, rate limited); try again shortly", detail)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if 400 <= status < 500:
            hint = "; the conversation may be too long for this model: start a new round" \
                if status == 400 and multi_turn else ""
            return EndpointRejected(f"the model server rejected the request (HTTP {status}){hint}", detail, status)
        return EndpointFailed(f"the model server returned an error (HTTP {status})", detail, status)
    if isinstance(exc, openai.APIError):  # an error event inside a 200 stream
        return EndpointFailed("the model server reported an error in the middle of the answer", detail, None)
    if isinstance(exc, json.JSONDecodeError):
        return MalformedReply("the model server's reply was not valid JSON", detail)
    if isinstance(exc, httpx2.TimeoutException):
        return EndpointTimeout(f"the model server sent nothing for {timeout_s:g} s (timeout)", detail)
    if isinstance(exc, httpx2.TransportError):
        return EndpointUnreachable("could not reach the model server (the connection broke off)", detail)
    return UnexpectedFailure("the answer failed because of an error inside the arena (an admin can "
                             "see it in the battle's record)", detail)


def public_error(exc: BaseException) -> str:
    """What the user may see before the vote: the kind of failure, never a model name."""
    return classify(exc, 0).public


@functools.lru_cache(maxsize=64)
def _client(base_url: str, api_key: str, timeout_s: float) -> openai.OpenAI:
    """One client per endpoint: creating one costs tens of ms (TLS context, connection pool),
    which every answer's time to first token would otherwise pay."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)


def _delta_of(chunk: Any) -> tuple[str, str, str | None, Any] | None:
    """(content, reasoning, finish_reason, usage) of one chunk; None for a chunk without choices.
    Raises MalformedReply when the chunk is JSON but not a chat completion chunk."""
    choices = getattr(chunk, "choices", None)
    usage = getattr(chunk, "usage", None)
    if choices is None and usage is None or not isinstance(choices, (list, type(None))):
        raise MalformedReply("the model server's reply was not a chat completion stream",
                             f"unexpected chunk: {str(chunk)[:200]}")
    if not choices:
        return None if usage is None else ("", "", None, usage)
    choice = choices[0]
    delta = getattr(choice, "delta", None)
    if delta is None:
        raise MalformedReply("the model server's reply was not a chat completion stream",
                             f"a choice without a delta: {str(choice)[:200]}")
    texts = [getattr(delta, "content", None),
             getattr(delta, "reasoning", None) or getattr(delta, "reasoning_content", None)]
    if any(t is not None and not isinstance(t, str) for t in texts):
        raise MalformedReply("the model server's reply was not a chat completion stream",
                             f"non-text content in a delta: {str(delta)[:200]}")
    return texts[0] or "", texts[1] or "", getattr(choice, "finish_reason", None), usage


def stream_chat(
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    params: GenerationParams,
    enable_thinking: bool | None,
    timeout_s: float,
    max_chars: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[Delta | ChatResult]:
    """Yields a Delta per received chunk, then one ChatResult. Raises ChatError (a subclass).

    `max_chars` caps the answer and thinking together, `max_seconds` the whole answer: past
    either, the stream is closed and the answer so far ends with finish_reason CUT_OFF.
    With several replicas, one answers (see the module's docstring)."""
    start = time.perf_counter()
    urls = endpoint.urls
    tried: set[str] = set()
    while True:
        url = BALANCER.acquire(urls, exclude=tried)
        assert url is not None  # one untried replica at least: the loop ends before
        tried.add(url)
        try:
            yield from _stream_from(url, endpoint, messages, params, enable_thinking, timeout_s,
                                    max_chars, max_seconds, start)
        except ChatError as exc:
            if _server_side(exc):
                BALANCER.mark_down(url, endpoint.down_s)
            if _never_reached(exc) and len(tried) < len(urls):
                continue  # nothing was sent: the next replica answers instead
            raise
        else:
            BALANCER.succeeded(url)
            return
        finally:
            BALANCER.release(url)


def _never_reached(exc: ChatError) -> bool:
    """The request never reached a server (connection refused, nothing listening, no connection
    within the time allowed): sending it to another replica cannot answer it twice."""
    cause = exc.__cause__
    inner = cause.__cause__ if isinstance(cause, openai.APIConnectionError) else cause
    return isinstance(inner, (httpx2.ConnectError, httpx2.ConnectTimeout))


def _server_side(exc: ChatError) -> bool:
    """A failure of the server (not of this request, nor of our code): skip it for a while."""
    if isinstance(exc, EndpointFailed):
        return exc.status is None or exc.status >= 500
    return isinstance(exc, (EndpointUnreachable, EndpointTimeout, EndpointBusy, UnfinishedStream))


def _stream_from(
    base_url: str,
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    params: GenerationParams,
    enable_thinking: bool | None,
    timeout_s: float,
    max_chars: int | None,
    max_seconds: float | None,
    start: float,
) -> Iterator[Delta | ChatResult]:
    """stream_chat against one server."""
    client = _client(base_url, endpoint.api_key, timeout_s)
    extra_body: dict[str, Any] = dict(params.extra)
    if enable_thinking is not None:
        extra_body["chat_template_kwargs"] = {"enable_thinking": enable_thinking}
    ttft = None
    raw, separate_reasoning = "", ""
    finish_reason = None
    usage = None
    cut: CutOff | None = None
    stream = None
    try:
        stream = client.chat.completions.create(
            model=endpoint.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=params.seed,
            extra_body=extra_body or None,
        )
        kind = stream.response.headers.get("content-type", "text/event-stream").split(";")[0].strip().lower()
        if kind != "text/event-stream":
            # the header is the endpoint's to write: shown only when it is a plain media type
            said = kind if _MEDIA_TYPE.fullmatch(kind) else "something else"
            raise MalformedReply(f"the model server's reply was not a chat stream (it sent {said})",
                                 f"content-type {kind[:100]!r} for a streamed request")
        for chunk in stream:
            parsed = _delta_of(chunk)
            if parsed is None:
                continue
            text, thought, reason, chunk_usage = parsed
            usage = chunk_usage or usage
            if (text or thought) and ttft is None:
                ttft = time.perf_counter() - start
            if max_chars is not None and len(raw) + len(separate_reasoning) + len(text) + len(thought) > max_chars:
                room = max(0, max_chars - len(raw) - len(separate_reasoning))
                text = text[:room]
                thought = thought[:max(0, room - len(text))]
                cut = "chars"
            raw += text
            separate_reasoning += thought
            if reason:
                finish_reason = reason
            if text or thought:
                inline_reasoning, answer = split_thinking(raw)
                yield Delta(answer, (separate_reasoning + inline_reasoning).strip())
            if cut is None and max_seconds is not None and time.perf_counter() - start > max_seconds:
                cut = "time"
            if cut is not None:
                finish_reason = CUT_OFF
                break
    except ChatError:
        raise
    except Exception as exc:  # every failure of a contestant is reported, never raised raw
        raise classify(exc, timeout_s, multi_turn=sum(m.get("role") == "user" for m in messages) > 1) from exc
    finally:
        if stream is not None:
            stream.close()  # a cut answer: the server stops generating what nobody will read
    if finish_reason is None:
        raise UnfinishedStream("the answer stopped before it was finished (the stream ended without "
                               "a finish reason)", "stream ended without a finish_reason")
    inline_reasoning, answer = split_thinking(raw)
    yield ChatResult(
        content=answer,
        reasoning=(separate_reasoning + inline_reasoning).strip(),
        finish_reason=finish_reason,
        ttft_s=ttft,
        duration_s=time.perf_counter() - start,
        prompt_tokens=getattr(usage, "prompt_tokens", None),
        completion_tokens=getattr(usage, "completion_tokens", None),
        cut_off=cut,
    )
