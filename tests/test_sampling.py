import random
from collections import Counter

import pytest

from qwen3arena.arena import find_identity_leak, model_weights, sample_pair


def test_never_a_model_against_itself_and_sides_are_random():
    rng = random.Random(0)
    weights = {"a": 1.0, "b": 1.0, "c": 1.0}
    left = Counter()
    for _ in range(3000):
        x, y = sample_pair(weights, rng)
        assert x != y
        left[x] += 1
    # each model appears on the left about a third of the time
    assert all(900 < left[m] < 1100 for m in weights)


def test_pair_frequency_follows_weights():
    rng = random.Random(1)
    weights = {"heavy": 4.0, "light1": 1.0, "light2": 1.0}
    seen = Counter()
    for _ in range(6000):
        seen.update(sample_pair(weights, rng))
    # heavy is in nearly every pair; light1 and light2 share the rest equally
    assert seen["heavy"] > 1.6 * seen["light1"]
    assert abs(seen["light1"] - seen["light2"]) < 400


def test_zero_weight_models_are_never_drawn():
    rng = random.Random(2)
    for _ in range(500):
        assert "off" not in sample_pair({"a": 1, "b": 1, "off": 0}, rng)


def test_new_models_are_boosted_until_they_have_votes():
    weights = model_weights({"new": 1.0, "old": 1.0}, {"old": 100, "new": 3},
                            boost_factor=3.0, boost_until_votes=30)
    assert weights == {"new": 3.0, "old": 1.0}
    weights = model_weights({"new": 1.0, "old": 1.0}, {"old": 100, "new": 30},
                            boost_factor=3.0, boost_until_votes=30)
    assert weights == {"new": 1.0, "old": 1.0}


def test_fewer_than_two_models_is_an_error():
    with pytest.raises(ValueError):
        sample_pair({"a": 1.0, "b": 0.0}, random.Random(0))


@pytest.mark.parametrize("text, expected", [
    ("I am Qwen, a large language model created by Alibaba Cloud.", "alibaba"),
    ("As tiny-qwen3-concise I think...", "qwen"),
    ("I'm ChatGPT.", "chatgpt"),
    ("Built by Meta AI", "meta ai"),
])
def test_identity_leaks_are_found(text, expected):
    terms = ["qwen", "alibaba", "chatgpt", "meta ai", "llama"]
    assert find_identity_leak([text], ["tiny-qwen3-concise"], terms) is not None
    assert find_identity_leak([text], [], [expected]) == expected


def test_contestant_names_are_found_in_any_spelling():
    names = ["tiny-qwen3-chatty"]
    for text in ["I am tiny qwen3 chatty!", "TINY_QWEN3_CHATTY here", "tinyqwen3chatty."]:
        assert find_identity_leak(["fine", text], names, []) is not None, text


def test_ordinary_answers_are_not_flagged():
    terms = ["qwen", "llama", "gpt", "claude"]
    texts = ["Cooked rice keeps about 4 days.", "Llamas are animals? No: 'llamas' is not the family name.",
             "Claudette bakes bread."]
    assert find_identity_leak(texts, ["tiny-qwen3-base"], terms) is None


def test_target_pairs_get_their_share_of_battles_with_random_sides():
    rng = random.Random(3)
    weights = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}
    pairs = Counter()
    left = Counter()
    for _ in range(4000):
        x, y = sample_pair(weights, rng, targets=[("c", "d")], target_share=0.5)
        pairs[frozenset((x, y))] += 1
        if {x, y} == {"c", "d"}:
            left[x] += 1
    # half the battles are targeted, plus the 1/6 of the rest that draw c-d anyway
    assert 0.55 < pairs[frozenset("cd")] / 4000 < 0.62
    assert 0.4 < left["c"] / sum(left.values()) < 0.6


def test_a_target_pair_with_a_model_down_is_skipped():
    rng = random.Random(4)
    for _ in range(300):
        pair = sample_pair({"a": 1.0, "b": 1.0, "down": 0.0}, rng, targets=[("a", "down")], target_share=1.0)
        assert "down" not in pair
    # without a share the draw is the plain one (same random stream as no targets at all)
    plain = [sample_pair({"a": 1, "b": 1, "c": 1}, random.Random(5)) for _ in range(3)]
    assert plain == [sample_pair({"a": 1, "b": 1, "c": 1}, random.Random(5), targets=[("a", "b")])
                     for _ in range(3)]


def test_the_arena_targets_each_checkpoint_against_its_parent(tmp_path):
    from qwen3arena.arena import Arena
    from qwen3arena.config import ArenaSettings
    from qwen3arena.store import ModelRecord, Store

    store = Store(tmp_path / "db.duckdb")
    store.upsert_model(ModelRecord("round-1", "adapter", metadata={"parent": None}))
    store.upsert_model(ModelRecord("round-2", "adapter", metadata={"parent": "round-1"}))
    arena = Arena(store, pool=None, settings=ArenaSettings(target_share=0.3, target_pairs=[["x", "y"]]))
    assert sorted(arena.target_pairs()) == [("round-2", "round-1"), ("x", "y")]
    off = Arena(store, pool=None, settings=ArenaSettings(target_share=0.3, target_pairs=[], parent_pairs=False))
    assert off.target_pairs() == []


@pytest.mark.parametrize("key, value, message", [
    ("TARGET_SHARE", "1.5", "not between 0 and 1"),
    ("TARGET_PAIRS", "[[a, a]]", "two different models"),
    ("TARGET_PAIRS", "[[a]]", "two different models"),
])
def test_bad_target_settings_are_refused(key, value, message):
    from qwen3arena.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(env={f"QWEN3ARENA__ARENA__{key}": value})
