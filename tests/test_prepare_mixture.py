"""Mixtures of token-shard groups: proportions, temperature, epochs, curriculum, resume."""

import numpy as np
import pytest

from lm.data.prepare.mixture import MixtureRows, MixtureSpec, mixture_iterator, stage_probabilities
from lm.data.shards import TokenShards, write_token_shards

SEQ = 16
VOCAB = 300


@pytest.fixture(scope="module")
def groups(tmp_path_factory):
    """Group "a" has tokens in [10, 100) and 4x the tokens of group "b" (tokens in [100, 200))."""
    root = tmp_path_factory.mktemp("groups")
    rng = np.random.default_rng(0)
    for name, low, high, docs in (("a", 10, 100, 400), ("b", 100, 200, 100)):
        write_token_shards([rng.integers(low, high, 31) for _ in range(docs)], root / name, vocab_size=VOCAB,
                           tokenizer_fingerprint="test", shard_max_tokens=2000)
    return {g: root / g for g in ("a", "b")}


def rows(groups, raw, *, steps=200, batch=8, seed=0) -> MixtureRows:
    return MixtureRows({g: TokenShards(d) for g, d in groups.items()}, MixtureSpec.from_dict(raw), seq_len=SEQ,
                       bos_id=1, eos_id=2, seed=seed, total_rows=steps * batch, rows_per_step=batch, num_steps=steps)


def group_by_tokens(row) -> str:
    body = row["inputs"][(row["inputs"] > 2)]
    return "a" if body.max() < 100 else "b"


def test_probabilities_of_each_rule():
    tokens = {"a": 400, "b": 100}
    weights = MixtureSpec.from_dict({"weights": {"a": 1, "b": 3}}).stages[0]
    assert stage_probabilities(weights, tokens) == pytest.approx([0.25, 0.75])
    temp = MixtureSpec.from_dict({"temperature": 2.0}).stages[0]
    assert stage_probabilities(temp, tokens) == pytest.approx([20 / 30, 10 / 30])  # sqrt(400), sqrt(100)
    epochs = MixtureSpec.from_dict({"epochs": {"a": 1, "b": 4}}).stages[0]
    assert stage_probabilities(epochs, tokens) == pytest.approx([0.5, 0.5])


def test_rows_follow_the_weights_and_their_tokens_come_from_the_right_group(groups):
    mix = rows(groups, {"weights": {"a": 0.7, "b": 0.3}})
    share = mix.rows_per_group()["a"] / len(mix)
    assert share == pytest.approx(0.7, abs=0.03)
    for i in range(0, len(mix), 97):
        assert group_by_tokens(mix[i]) == mix.group_of(i)


def test_temperature_one_samples_in_proportion_to_tokens(groups):
    mix = rows(groups, {"temperature": 1.0})
    assert mix.rows_per_group()["a"] / len(mix) == pytest.approx(0.8, abs=0.03)


def test_same_seed_same_rows_other_seed_other_rows(groups):
    a, b, c = (rows(groups, {"temperature": 2.0}, seed=s) for s in (0, 0, 1))
    assert all(np.array_equal(a[i]["inputs"], b[i]["inputs"]) for i in range(0, len(a), 50))
    assert any(not np.array_equal(a[i]["inputs"], c[i]["inputs"]) for i in range(0, len(a), 50))


def test_curriculum_switches_at_the_stage_boundary(groups):
    spec = {"stages": [{"until": 50, "weights": {"a": 1, "b": 0}}, {"until": 0.75, "weights": {"a": 0, "b": 1}},
                       {"weights": {"a": 1, "b": 1}}]}
    mix = rows(groups, spec, steps=200, batch=8)
    groups_of = [mix.group_of(i) for i in range(len(mix))]
    assert set(groups_of[:400]) == {"a"} and set(groups_of[400:1200]) == {"b"}
    assert 0.4 < groups_of[1200:].count("a") / 400 < 0.6
    # Group "a" continues where stage 1 left it: its 401st row is the first of stage 3.
    first_a_in_stage3 = 1200 + groups_of[1200:].index("a")
    reference = rows(groups, {"weights": {"a": 1}}, steps=200, batch=8)
    assert np.array_equal(mix[first_a_in_stage3]["inputs"], reference[400]["inputs"])


def test_epochs_cap_is_enforced(groups):
    with pytest.raises(ValueError, match=r"group 'b' would be read .* times but max_epochs\['b'\] is 1"):
        rows(groups, {"weights": {"a": 0.2, "b": 0.8}, "max_epochs": {"b": 1}}, steps=200, batch=8)


def test_iterator_resumes_exactly(groups):
    kwargs = dict(seq_len=SEQ, global_batch_size=4, num_steps=30, seed=3, bos_id=1, eos_id=2,
                  process_index=0, process_count=1)
    spec = MixtureSpec.from_dict({"temperature": 3.0})
    it = mixture_iterator(groups, spec, **kwargs)
    batches = [next(it) for _ in range(12)]
    resumed = mixture_iterator(groups, spec, **kwargs)
    for _ in range(5):
        next(resumed)
    state = resumed.get_state()
    again = mixture_iterator(groups, spec, **kwargs)
    again.set_state(state)
    for expected in batches[5:]:
        got = next(again)
        assert all(np.array_equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("raw, message", [
    ({"weights": {"a": 1}, "temperature": 2}, "exactly one of"),
    ({"temperature": 0}, "must be a number > 0"),
    ({"stages": [{"until": 5, "weights": {"a": 1}}, {"until": 9, "weights": {"a": 1}}]}, "the last stage runs to the end"),
    ({"stages": [{"weights": {"a": 1}}, {"temperature": 1}]}, r"stages\[0\].until: None must be a step"),
    ({"stages": [{"until": 5, "weights": {"a": 1}}, {"until": 3, "weights": {"a": 1}}, {"temperature": 1}]},
     "must increase"),
    ({"stages": [{"until": 1.5, "weights": {"a": 1}}, {"temperature": 1}]}, r"stages\[0\].until: 1.5 must be a step"),
    ({"weights": {"a": 0}}, "at least one group"),
    ({"temperature": 1, "stages": []}, "beside 'stages'"),
])
def test_spec_errors(raw, message):
    with pytest.raises(ValueError, match=message):
        MixtureSpec.from_dict(raw)


def test_unknown_group_is_named(groups):
    with pytest.raises(ValueError, match=r"groups \['c'\] that have no token shards"):
        rows(groups, {"weights": {"c": 1}})
