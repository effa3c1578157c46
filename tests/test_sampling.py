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


# -- pairs chosen for information (qwen3arena/arena/informative.py) ---------------------------

import numpy as np  # noqa: E402

from qwen3arena.arena.informative import (  # noqa: E402
    InformativeOptions, contrast_fall, pair_scores, sample_informative_pair, tally_counts,
)

NAMES = [f"m{i}" for i in range(6)]


def _play(counts: np.ndarray, true: np.ndarray, a: int, b: int, rng: np.random.Generator) -> None:
    p = 1.0 / (1.0 + 10.0 ** ((true[b] - true[a]) / 400.0))
    counts[a, b, 0 if rng.random() < p else 1] += 1


def _history(true: np.ndarray, votes: int, seed: int, among: int | None = None) -> np.ndarray:
    """Uniformly drawn votes among the first `among` models (all by default)."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((len(true), len(true), 4))
    for _ in range(votes):
        a, b = rng.choice(among or len(true), 2, replace=False)
        _play(counts, true, a, b, rng)
    return counts


def test_one_more_vote_lowers_a_variance_by_what_sherman_morrison_says():
    rng = np.random.default_rng(0)
    info = np.zeros((5, 5))
    for _ in range(40):
        a, b = rng.choice(5, 2, replace=False)
        info[a, b] += 0.2
    laplacian = np.diag((info + info.T).sum(axis=1)) - info - info.T + 0.1 * np.eye(5)
    cov = np.linalg.inv(laplacian)
    C = np.array([[1.0, -1.0, 0, 0, 0], [0, 0, 1.0, 0, -1.0]]).T  # two contrasts
    i, j, v = np.array([0, 1, 3]), np.array([1, 4, 2]), np.array([0.25, 0.21, 0.1])
    predicted = contrast_fall(cov, C, i, j, v)
    for k in range(3):
        x = np.zeros(5)
        x[i[k]], x[j[k]] = 1.0, -1.0
        after = np.linalg.inv(laplacian + v[k] * np.outer(x, x))
        actual = np.einsum("iq,ij,jq->q", C, cov, C) - np.einsum("iq,ij,jq->q", C, after, C)
        assert predicted[k] == pytest.approx(actual, rel=1e-9)
    assert (predicted > 0).all()


def test_the_open_question_outscores_the_settled_one():
    """m0 and m1 are close and barely played; m5 is far below everyone after many votes: the
    m0-m1 order is the open question, nothing about m5 is."""
    true = np.array([1010.0, 1000.0, 990.0, 980.0, 970.0, 500.0])
    counts = _history(true, 3000, seed=1)
    counts[0, 1] = counts[1, 0] = 0                      # m0-m1 never met
    scores = pair_scores(counts, NAMES, NAMES)
    assert scores[("m0", "m1")] > 3 * max(scores[(a, "m5")] for a in NAMES[:5])
    # a checkpoint's parent question, once asked, dominates
    with_parent = pair_scores(counts, NAMES, NAMES, parents=[("m3", "m2")])
    assert max(with_parent, key=with_parent.get) == ("m2", "m3")


def test_the_informative_draw_keeps_outages_weights_and_target_pairs():
    counts = _history(np.array([1100.0, 1050.0, 1000.0, 950.0, 900.0, 850.0]), 600, seed=2)
    rng = random.Random(5)
    weights = {name: 1.0 for name in NAMES} | {"m2": 0.0}  # m2 is down
    seen, pairs = Counter(), Counter()
    for _ in range(800):
        pair = sample_informative_pair(weights, rng, counts, NAMES, parents=[("m3", "m2")],
                                       targets=[("m4", "m5"), ("m1", "m2")], target_share=0.4)
        assert "m2" not in pair and pair[0] != pair[1]
        seen.update(pair)
        pairs[frozenset(pair)] += 1
    assert pairs[frozenset(("m4", "m5"))] / 800 > 0.4        # the live target pair keeps its share
    # a heavier model is drawn more often than from the same state at weight 1
    heavy = Counter()
    for _ in range(800):
        heavy.update(sample_informative_pair(weights | {"m0": 4.0}, rng, counts, NAMES))
    plain = Counter()
    for _ in range(800):
        plain.update(sample_informative_pair(weights, rng, counts, NAMES))
    assert heavy["m0"] > 1.5 * plain["m0"]


def test_no_model_is_starved_even_when_nothing_about_it_is_open():
    true = np.array([1010.0, 1000.0, 990.0, 980.0, 970.0, 400.0])
    counts = _history(true, 4000, seed=3)
    rng = random.Random(6)
    options = InformativeOptions(explore=0.25)
    seen = Counter()
    for _ in range(1500):
        seen.update(sample_informative_pair({n: 1.0 for n in NAMES}, rng, counts, NAMES, options=options))
    share = seen["m5"] / 1500  # battles m5 takes part in; uniform would be 1/3
    assert share >= 0.5 * options.explore * 2 / len(NAMES)
    assert share < 0.2  # and yet most battles went where the questions are open


def test_a_new_checkpoint_is_told_from_its_parent_with_half_the_votes_of_uniform_draws():
    """Seeded simulation: 5 established models plus a checkpoint 40 points above its parent.
    After the same 600 new votes, the variance of the checkpoint-minus-parent estimate (what
    decides "better") is at most half under the informative draw: as informative as twice
    the votes drawn uniformly."""
    from qwen3arena.ratings import strength_covariance

    true = np.array([1100.0, 1050.0, 1000.0, 950.0, 900.0, 1040.0])  # m5's parent is m2
    variances = {"uniform": [], "informative": []}
    for seed in range(3):
        for name in variances:
            counts = _history(true, 1000, seed, among=5)
            rng, outcomes = random.Random(seed), np.random.default_rng(100 + seed)
            for _ in range(600):
                if name == "uniform":
                    left, right = sample_pair({n: 1.0 for n in NAMES}, rng)
                else:
                    left, right = sample_informative_pair({n: 1.0 for n in NAMES}, rng, counts, NAMES,
                                                          parents=[("m5", "m2")])
                _play(counts, true, NAMES.index(left), NAMES.index(right), outcomes)
            _, _, cov = strength_covariance(counts)
            variances[name].append(cov[5, 5] + cov[2, 2] - 2 * cov[5, 2])
    ratio = np.mean(variances["informative"]) / np.mean(variances["uniform"])
    assert ratio <= 0.5, ratio


def test_stored_votes_become_the_count_tensor_and_settings_pick_the_sampler(tmp_path):
    from qwen3arena.arena.informative import draw_pair
    from qwen3arena.config import ArenaSettings
    from qwen3arena.store import BattleRecord, ModelRecord, Store

    store = Store(tmp_path / "db.duckdb")
    for name in ("a", "b", "c", "d"):
        store.upsert_model(ModelRecord(name, "adapter", metadata={"parent": "a" if name == "d" else None}))
    for i, (a, b, outcome, leak) in enumerate([("a", "b", "model_a", False), ("a", "b", "model_a", False),
                                               ("c", "a", "tie", False), ("b", "c", "model_b", True)]):
        store.save_battle(BattleRecord(f"b{i}", "anon:1", a, b, status="ready", turns=1, identity_leak=leak))
        store.record_vote(f"b{i}", outcome, "anon:1")
    names, counts = tally_counts(store.vote_tallies())
    assert names == ["a", "b", "c"] and counts.sum() == 3       # the leaked vote is left out
    assert counts[0, 1, 0] == 2 and counts[2, 0, 2] == 1
    weights = {name: 1.0 for name in "abcd"}
    plain = ArenaSettings(pair_sampler="weighted")
    assert [draw_pair(store, plain, weights, random.Random(9)) for _ in range(3)] == \
        [sample_pair(weights, random.Random(9)) for _ in range(3)]
    informative = ArenaSettings(pair_sampler="informative", explore_share=0.0)
    drawn = Counter(frozenset(draw_pair(store, informative, weights, random.Random(i))) for i in range(200))
    assert drawn[frozenset("ad")] > 0.3 * 200  # the new checkpoint d meets its parent a most
    no_parents = ArenaSettings(pair_sampler="informative", explore_share=0.0, parent_pairs=False)
    drawn = Counter(frozenset(draw_pair(store, no_parents, weights, random.Random(i))) for i in range(200))
    assert drawn[frozenset("ad")] < 0.3 * 200


@pytest.mark.parametrize("key, value, message", [
    ("EXPLORE_SHARE", "1.5", "not between 0 and 1"),
    ("PARENT_FOCUS", "-1", "negative"),
    ("PAIR_SAMPLER", "greedy", "not one of"),
])
def test_bad_sampler_settings_are_refused(key, value, message):
    from qwen3arena.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match=message):
        load_settings(env={f"QWEN3ARENA__ARENA__{key}": value})
