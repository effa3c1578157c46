"""Streaming chat through the `openai` client against any OpenAI-compatible server.

Errors become ChatError with a public message that never names the model (it is shown
before the vote) and a detail kept for the store. Qwen3 thinking is kept apart from the
answer whether the server separates it (vLLM's reasoning parser: delta.reasoning) or not
(inline <think>...</think>).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Iterator

import openai

from qwen3arena.errors import Refused
from qwen3arena.config import GenerationParams


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    model: str
    api_key: str = "EMPTY"


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

    def metrics(self) -> dict[str, Any]:
        return {
            "ttft_s": self.ttft_s, "duration_s": self.duration_s,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
        }


class ChatError(Refused, RuntimeError):
    def __init__(self, public: str, detail: str):
        super().__init__(detail)
        self.public = public
        self.detail = detail


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


def public_error(exc: BaseException) -> str:
    """What the user may see before the vote: the kind of failure, never a model name."""
    if isinstance(exc, openai.APITimeoutError):
        return "the model took too long to answer"
    if isinstance(exc, openai.APIConnectionError):
        return "could not reach the model server"
    if isinstance(exc, openai.RateLimitError):
        return "the model server is busy (rate limited); try again shortly"
    if isinstance(exc, openai.BadRequestError):
        text = str(exc).lower()
        if "context" in text or "too long" in text or "maximum" in text:
            return "the conversation is too long for this model; start a new round"
        return "the model server rejected the request (HTTP 400)"
    if isinstance(exc, openai.APIStatusError):
        return f"the model server returned an error (HTTP {exc.status_code})"
    return "the answer failed unexpectedly"


@functools.lru_cache(maxsize=64)
def _client(base_url: str, api_key: str, timeout_s: float) -> openai.OpenAI:
    """One client per endpoint: creating one costs tens of ms (TLS context, connection pool),
    which every answer's time to first token would otherwise pay."""
    return openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)


def stream_chat(
    endpoint: Endpoint,
    messages: list[dict[str, Any]],
    params: GenerationParams,
    enable_thinking: bool | None,
    timeout_s: float,
) -> Iterator[Delta | ChatResult]:
    """Yields a Delta per received chunk, then one ChatResult. Raises ChatError."""
    client = _client(endpoint.base_url, endpoint.api_key, timeout_s)
    extra_body: dict[str, Any] = dict(params.extra)
    if enable_thinking is not None:
        extra_body["chat_template_kwargs"] = {"enable_thinking": enable_thinking}
    start = time.perf_counter()
    ttft = None
    raw, separate_reasoning = "", ""
    finish_reason = None
    usage = None
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
        for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            if not chunk.choices:
                continue
            choice = chunk.choices[0]
            delta = choice.delta
            text = delta.content or ""
            thought = getattr(delta, "reasoning", None) or getattr(delta, "reasoning_content", None) or ""
            if (text or thought) and ttft is None:
                ttft = time.perf_counter() - start
            raw += text
            separate_reasoning += thought
            if choice.finish_reason:
                finish_reason = choice.finish_reason
            if text or thought:
                inline_reasoning, answer = split_thinking(raw)
                yield Delta(answer, (separate_reasoning + inline_reasoning).strip())
    except ChatError:
        raise
    except Exception as exc:  # every failure of a contestant is reported, never raised raw
        raise ChatError(public_error(exc), f"{type(exc).__name__}: {exc}") from exc
    if finish_reason is None:
        # the connection closed without a final chunk: an unfinished answer is never judged
        raise ChatError("the answer stopped before it was finished",
                        "stream ended without a finish_reason")
    inline_reasoning, answer = split_thinking(raw)
    yield ChatResult(
        content=answer,
        reasoning=(separate_reasoning + inline_reasoning).strip(),
        finish_reason=finish_reason,
        ttft_s=ttft,
        duration_s=time.perf_counter() - start,
        prompt_tokens=usage.prompt_tokens if usage else None,
        completion_tokens=usage.completion_tokens if usage else None,
    )
