"""The contestants the arena may draw: models on the managed vLLM server and external
OpenAI-compatible endpoints, each with its generation parameters and current health.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

import httpx

from qwen3arena.config import EndpointSpec, GenerationParams
from qwen3arena.serve.balance import BALANCER
from qwen3arena.serve.chat import Endpoint
from qwen3arena.serve.vllm_server import VLLMServer


@dataclass(frozen=True)
class Contestant:
    name: str
    endpoint: Endpoint
    generation: GenerationParams
    weight: float = 1.0
    # vLLM accepts chat_template_kwargs (the Qwen3 thinking switch); strict hosted APIs
    # reject unknown fields, so external endpoints do not get it.
    thinking_switch: bool = True
    managed: bool = True
    registered_at: datetime | None = None


@dataclass
class _Health:
    ok: bool
    checked: float
    reason: str = ""


@dataclass
class ContestantPool:
    """Knows which contestants exist and which can answer right now (outage exclusion)."""

    server: VLLMServer | None
    contestants: dict[str, Contestant] = field(default_factory=dict)
    up_ttl_s: float = 30.0
    down_ttl_s: float = 15.0
    _health: dict[str, _Health] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, contestant: Contestant) -> None:
        with self._lock:
            self.contestants[contestant.name] = contestant
            self._health.pop(contestant.name, None)

    def remove(self, name: str) -> None:
        with self._lock:
            self.contestants.pop(name, None)

    def get(self, name: str) -> Contestant:
        return self.contestants[name]

    def names(self) -> list[str]:
        return sorted(self.contestants)

    def identities(self) -> set[str]:
        """Every name a contestant is known by (for the identity-leak check)."""
        return {n for c in list(self.contestants.values()) for n in (c.name, c.endpoint.model)}

    def available(self) -> list[Contestant]:
        served = set()
        if self.server is not None:
            status = self.server.status()
            if status.state == "ready":
                served = {self.server.served_name, *status.adapters}
        result = []
        for contestant in list(self.contestants.values()):
            if contestant.managed:
                if contestant.name in served:
                    result.append(contestant)
            elif self._endpoint_up(contestant):
                result.append(contestant)
        return result

    def report_failure(self, name: str, reason: str) -> None:
        """An answer failed: keep an external endpoint out of the draw for a while (one with
        several replicas only when all of them are down)."""
        contestant = self.contestants.get(name)
        if contestant is not None and not contestant.managed:
            urls = contestant.endpoint.urls
            if len(urls) > 1 and not all(BALANCER.is_down(url) for url in urls):
                return  # the replica that failed is skipped by the balancer; another one answers
            with self._lock:
                self._health[name] = _Health(False, time.monotonic(), reason)

    def health(self) -> dict[str, str]:
        """Name -> 'up' / 'down: reason' / 'not served', for the admin view."""
        available = {c.name for c in self.available()}
        out = {}
        for name, contestant in sorted(self.contestants.items()):
            if name in available:
                h = self._health.get(name)
                partly = h is not None and h.ok and len(contestant.endpoint.urls) > 1 and not h.reason.startswith("0 ")
                out[name] = f"up ({h.reason})" if partly else "up"
            elif contestant.managed:
                out[name] = "not served (vLLM not ready)"
            else:
                h = self._health.get(name)
                out[name] = f"down: {h.reason}" if h else "down"
        return out

    def _endpoint_up(self, contestant: Contestant) -> bool:
        now = time.monotonic()
        with self._lock:
            cached = self._health.get(contestant.name)
        if cached and now - cached.checked < (self.up_ttl_s if cached.ok else self.down_ttl_s):
            return cached.ok
        endpoint = contestant.endpoint
        reasons = []
        for url in endpoint.urls:
            # every replica is checked: the balancer skips one that fails for its back-off
            try:
                response = httpx.get(url.rstrip("/") + "/models",
                                     headers={"Authorization": f"Bearer {endpoint.api_key}"}, timeout=3)
                reason = None if response.status_code == 200 else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            if reason is not None:
                BALANCER.mark_down(url, endpoint.down_s)
                reasons.append(reason)
        up = len(reasons) < len(endpoint.urls)
        if len(endpoint.urls) == 1:
            health = _Health(up, now, reasons[0] if reasons else "HTTP 200")
        else:
            health = _Health(up, now, f"{len(reasons)} of {len(endpoint.urls)} replicas down"
                             + (f" ({', '.join(sorted(set(reasons)))})" if reasons else ""))
        with self._lock:
            self._health[contestant.name] = health
        return health.ok


def endpoint_contestant(spec: EndpointSpec, defaults: GenerationParams) -> Contestant:
    api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else "EMPTY"
    return Contestant(
        name=spec.name,
        endpoint=Endpoint(spec.urls[0], spec.model_id, api_key or "EMPTY",
                          replicas=tuple(spec.urls) if len(spec.urls) > 1 else ()),
        generation=defaults.merged(spec.generation),
        weight=spec.weight,
        thinking_switch=False,
        managed=False,
    )
