"""Typed settings: configs/default.yaml, an optional site file, then environment variables.

One place for configuration. Every other module receives the dataclass it needs, never reads
the environment itself (except secrets named here, read at the moment of use).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
SPACE_CONFIG = REPO_ROOT / "configs" / "space.yaml"
ENV_PREFIX = "QWEN3ARENA__"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


@dataclass
class UISettings:
    host: str = "127.0.0.1"
    port: int = 7860
    title: str = "qwen3arena"
    # on: the Train tab is shown (training runs on the CPU too, slowly); off: hidden;
    # auto: shown only where a CUDA GPU is visible (the Space configuration).
    train_tab: Literal["on", "off", "auto"] = "on"


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

    accounts: list[AccountSpec] = field(default_factory=list)
    accounts_file: str | None = None   # YAML list of accounts, merged with `accounts`
    # With accounts configured: true lets anonymous visitors in (arena only); false sends
    # them to the login page.
    public: bool = False
    # Hugging Face login on a Space (needs hf_oauth: true in the README front matter).
    hf_oauth: bool = False
    hf_admins: list[str] = field(default_factory=list)      # HF usernames
    hf_labellers: list[str] = field(default_factory=list)   # HF usernames; "*" = any HF user
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

    # A claimed prompt nobody has touched for this long can be taken by another labeller.
    claim_timeout_s: float = 1800.0
    max_prompts: int = 5000
    default_reasons: list[str] = field(default_factory=lambda: [
        "more accurate", "more helpful", "clearer", "safer", "more concise"])


@dataclass
class ModelSettings:
    base: str = "embedded"
    served_name: str = "tiny-qwen3-base"
    adapters: dict[str, str] = field(default_factory=dict)


@dataclass
class VLLMSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8011
    dtype: str = "bfloat16"
    max_model_len: int = 2048
    max_lora_rank: int = 16
    max_loras: int = 4
    kv_cache_gib: int = 1
    reasoning_parser: str | None = "qwen3"
    startup_timeout_s: float = 600.0
    extra_args: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

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
    max_input_chars: int = 4000
    max_turns: int = 50
    thinking: Literal["off", "hidden", "folded"] = "off"
    boost_factor: float = 3.0
    boost_until_votes: int = 30
    # Target pairs: this share of battles is drawn among the pairs below (FastChat's targets),
    # so the comparisons you care about get votes first.
    target_share: float = 0.0
    target_pairs: list[list[str]] = field(default_factory=list)  # [[model, model], ...]
    parent_pairs: bool = True   # every checkpoint with a registered parent is a target pair with it
    request_timeout_s: float = 120.0
    identity_terms: list[str] = field(default_factory=list)


@dataclass
class EndpointSpec:
    """An OpenAI-compatible endpoint that joins the arena as a contestant."""

    name: str
    base_url: str
    model: str | None = None
    api_key_env: str | None = None
    weight: float = 1.0
    generation: dict[str, Any] = field(default_factory=dict)

    @property
    def model_id(self) -> str:
        return self.model or self.name


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
    max_retries: int = 5
    backoff_s: float = 1.0  # first wait; doubled on every retry, capped by max_backoff_s
    max_backoff_s: float = 60.0
    request_timeout_s: float = 180.0


@dataclass
class EvalSettings:
    """How benchmarks are run; configs/default.yaml `evals:` maps onto this."""

    datasets: list[str] = field(default_factory=lambda: ["kitchen_qa", "kitchen_mcq"])
    limit: int | None = None          # samples per subset; None = all
    max_tokens: int = 64
    concurrency: int = 4              # requests in flight (EvalScope eval_batch_size)
    request_timeout_s: float = 120.0
    retries: int = 2                  # EvalScope's own retries per request (default 5 x 10 s)
    retry_interval_s: int = 2
    thinking: bool = False            # False: chat_template_kwargs.enable_thinking = false (Qwen3)
    extra_body: dict[str, Any] = field(default_factory=dict)  # sent as-is in each request
    run_timeout_s: float = 3600.0     # the whole child process
    preflight: bool = True            # check GET /models lists the model before starting


@dataclass
class Settings:
    home: Path = Path("~/.qwen3arena")
    ui: UISettings = field(default_factory=UISettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    vllm: VLLMSettings = field(default_factory=VLLMSettings)
    arena: ArenaSettings = field(default_factory=ArenaSettings)
    generation: GenerationParams = field(default_factory=GenerationParams)
    endpoints: list[EndpointSpec] = field(default_factory=list)
    judge: JudgeSettings = field(default_factory=JudgeSettings)
    evals: EvalSettings = field(default_factory=EvalSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    campaigns: CampaignSettings = field(default_factory=CampaignSettings)

    @property
    def db_path(self) -> Path:
        return self.home / "qwen3arena.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"


def load_settings(
    config_file: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """Defaults from configs/default.yaml, then the site file, then QWEN3ARENA__* variables.

    On a Hugging Face Space (SPACE_ID is set) with no site file named, configs/space.yaml is
    the site file, so the Space needs no variable to get its configuration.
    """
    env = os.environ if env is None else env
    raw = _read_yaml(DEFAULT_CONFIG)
    site = config_file or env.get("QWEN3ARENA_CONFIG")
    if not site and env.get("SPACE_ID"):
        site = SPACE_CONFIG
    if site:
        raw = _deep_merge(raw, _read_yaml(Path(site)))
    for key, value in sorted(env.items()):
        if key.startswith(ENV_PREFIX):
            path = [part.lower() for part in key[len(ENV_PREFIX):].split("__") if part]
            raw = _deep_merge(raw, _nest(path, yaml.safe_load(value) if value else value))
    if env.get("QWEN3ARENA_HOME"):
        raw["home"] = env["QWEN3ARENA_HOME"]
    settings = _build(Settings, raw, "")
    settings.home = Path(settings.home).expanduser().resolve()
    names = [e.name for e in settings.endpoints]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"endpoints: duplicate contestant names {sorted(duplicates)}")
    if not 0.0 <= settings.arena.target_share <= 1.0:
        raise ConfigError(f"arena.target_share: {settings.arena.target_share} is not between 0 and 1")
    bad_pairs = [pair for pair in settings.arena.target_pairs if len(pair) != 2 or pair[0] == pair[1]]
    if bad_pairs:
        raise ConfigError(f"arena.target_pairs: each entry names two different models; got {bad_pairs}")
    users = [a.username for a in settings.auth.accounts]
    if len(set(users)) != len(users):
        raise ConfigError("auth.accounts: a username appears twice")
    return settings


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
