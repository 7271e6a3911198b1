"""The Task container and the samplers' contracts (sizes, seeding, structure of every draw)."""

import math

import numpy as np
import pytest

from omnirl_core.world import (
    ORACLE_GAMMA,
    Task,
    TaskFileError,
    TaskValidationError,
    policy_iteration,
    sample_anymdp,
    sample_garnet,
)
from omnirl_core.world.anymdp import band_limits


def tiny_task(**overrides) -> Task:
    P = np.zeros((3, 2, 3))
    P[0, 0, 1] = P[0, 1, 0] = 1.0
    P[1, 0, 2] = P[1, 1, 0] = 1.0
    kwargs = dict(transition=P, reward=np.ones((3, 2, 3)), terminal=[False, False, True], max_steps=10)
    kwargs.update(overrides)
    return Task.from_arrays(**kwargs)


# ---------------------------------------------------------------- Task validation and persistence
def test_from_arrays_defaults_and_views():
    task = tiny_task()
    assert (task.ns, task.na, task.n_obs, task.horizon) == (3, 2, 3, 10)
    np.testing.assert_array_equal(task.start_prob, [1, 0, 0])
    np.testing.assert_allclose(task.expected_reward[0], [1.0, 1.0])
    np.testing.assert_array_equal(task.obs_to_state, [0, 1, 2])
    with pytest.raises(ValueError):
        task.transition[0, 0, 0] = 0.5  # arrays are read-only


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(transition=np.ones((3, 2, 3))), "sum to 1"),
        (dict(reward=np.ones((3, 3, 3))), "reward has shape"),
        (dict(reward_noise=-np.ones((3, 2, 3))), ">= 0"),
        (dict(start_prob=[0.5, 0.2, 0.0]), "probability vector"),
        (dict(start_prob=[0.0, 0.0, 1.0]), "must not be terminal"),
        (dict(terminal=[False, False, False]), "sum to 1"),
        (dict(state_mapping=[0, 0, 1]), "distinct ids"),
        (dict(max_steps=0), "max_steps"),
        (dict(reward=np.full((3, 2, 3), np.nan)), "NaN"),
    ],
)
def test_validation_names_the_problem(overrides, message):
    with pytest.raises(TaskValidationError, match=message):
        tiny_task(**overrides)


def test_terminal_rows_must_be_zero():
    P = np.zeros((3, 2, 3))
    P[:, :, 0] = 1.0
    with pytest.raises(TaskValidationError, match="all-zero"):
        Task.from_arrays(P, np.zeros((3, 2)), terminal=[False, False, True])


def test_save_load_round_trip_is_exact(tmp_path):
    task = sample_anymdp(16, 5, seed=3, min_state_space=10)
    path = task.save(tmp_path / "t.npz")
    back = Task.load(path)
    assert back.equals(task)
    assert back.meta == task.meta and back.n_obs == 16


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(TaskFileError, match="not found"):
        Task.load(tmp_path / "missing.npz")
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(TaskFileError, match="corrupt.npz"):
        Task.load(bad)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.arange(3))
    with pytest.raises(TaskFileError, match="not an OmniRL task file"):
        Task.load(foreign)
    truncated = tmp_path / "truncated.npz"
    data = sample_anymdp(16, 5, seed=0).save(tmp_path / "ok.npz").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(TaskFileError, match="truncated.npz"):
        Task.load(truncated)


def test_save_is_atomic_no_temp_files_left(tmp_path):
    sample_anymdp(16, 5, seed=0).save(tmp_path / "a.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


# ---------------------------------------------------------------- sampler contracts
@pytest.mark.parametrize("ns", [0, 2, 5, 7, -1])
def test_bad_state_counts_are_named(ns):
    with pytest.raises(ValueError, match=f"ns={ns}"):
        sample_anymdp(ns, 5, seed=0)


@pytest.mark.parametrize("na", [0, 1])
def test_bad_action_counts_are_named(na):
    with pytest.raises(ValueError, match=f"na={na}"):
        sample_anymdp(16, na, seed=0)


def test_seed_types():
    with pytest.raises(TypeError):
        sample_anymdp(16, 5, seed="zero")
    a = sample_anymdp(16, 5, seed=np.random.default_rng(5))
    b = sample_anymdp(16, 5, seed=np.random.default_rng(5))
    assert a.equals(b)


@pytest.mark.parametrize("ns", [1, 16, 64])
def test_same_seed_same_task_and_global_rng_untouched(ns):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a, b = sample_anymdp(ns, 5, seed=42), sample_anymdp(ns, 5, seed=42)
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    assert a.equals(b)
    assert not a.equals(sample_anymdp(ns, 5, seed=43))


@pytest.mark.parametrize("ns", [8, 16, 32, 128])
def test_structure_of_every_anymdp_draw(ns):
    for seed in range(6 if ns < 128 else 2):
        task = sample_anymdp(ns, 5, seed=seed)
        term = task.terminal
        # start states are among the three lowest-ranked and never terminal
        assert set(np.flatnonzero(task.start_prob)) <= {0, 1, 2}
        assert not term[task.start_prob > 0].any()
        lo = max(4 * ns, 100)
        assert lo <= task.max_steps <= max(min(8 * ns, 500), lo + 1)
        # banded: successors of s lie in [s - b-, s + b+) or beyond only through the widening rule
        max_leap, max_back = band_limits(ns)
        for s in np.flatnonzero(~term):
            succ = np.flatnonzero(task.transition[s].sum(0) > 0)
            assert succ.min() >= s - max_back
            if s == ns - 1:
                assert task.transition[s, :, s].sum() == 0  # the top state never loops
        # terminal states carry zero rows, the optimal value ascends overall along the ranking
        assert np.all(task.transition[term] == 0)
        _, V = policy_iteration(task, ORACLE_GAMMA)
        live = np.flatnonzero(~term)
        assert np.corrcoef(live, V[live])[0, 1] > 0


def test_min_state_space_subsets_observations():
    sizes = set()
    for seed in range(20):
        task = sample_anymdp(32, 5, seed=seed, min_state_space=10)
        assert 10 <= task.ns <= 32 and task.n_obs == 32
        assert len(set(task.state_mapping.tolist())) == task.ns
        assert task.state_mapping.max() < 32
        sizes.add(task.ns)
    assert len(sizes) > 5


def test_bandit_shape():
    task = sample_anymdp(1, 7, seed=0)
    assert task.kind == "bandit" and task.is_bandit and task.max_steps == 1
    assert task.transition.shape == (1, 7, 1) and np.all(task.transition == 1)
    means = task.reward[0, :, 0]
    assert means.std() > 0.01
    np.testing.assert_allclose(task.reward_noise[0, :, 0] / means, task.reward_noise[0, 0, 0] / means[0])


def test_garnet_structure():
    task = sample_garnet(16, 5, b=3, seed=1)
    np.testing.assert_array_equal((task.transition > 0).sum(-1), 3)
    np.testing.assert_allclose(task.transition.sum(-1), 1.0)
    assert task.start_prob[0] == 1 and not task.terminal.any()
    assert np.all(task.reward_noise == 0)
    assert 0.05 < task.reward.std() < 0.2
    with pytest.raises(ValueError, match="branching"):
        sample_garnet(16, 5, b=0, seed=0)
    with pytest.raises(ValueError, match="ns=4"):
        sample_garnet(4, 5, b=2, seed=0)


def test_batch_sampler_is_deterministic_and_valid():
    from omnirl_core.world import sample_anymdp_batch

    a = sample_anymdp_batch(5, 16, 5, seed=9)
    b = sample_anymdp_batch(5, 16, 5, seed=9)
    assert all(x.equals(y) for x, y in zip(a, b))
    assert len({t.transition.tobytes() for t in a}) == 5  # distinct tasks
    bandits = sample_anymdp_batch(3, 1, 4, seed=0)
    assert all(t.is_bandit and t.na == 4 for t in bandits)
    assert sample_anymdp_batch(0, 16, seed=0) == []


# ---------------------------------------------------------------- Garnet: the law of the draw, not only its shape
GARNET_NS, GARNET_NA, GARNET_B, GARNET_DRAWS = 16, 5, 3, 120


def _garnet_draws(sampler) -> np.ndarray:
    """Transitions of GARNET_DRAWS seeded draws of ``sampler(ns, na, b, seed)`` -> [draws, ns, na, ns]."""
    return np.stack([sampler(GARNET_NS, GARNET_NA, GARNET_B, seed).transition for seed in range(GARNET_DRAWS)])


def _check_garnet_law(P: np.ndarray) -> None:
    """Successors: b distinct states per (s, a), every state as often as the others (chi-square over the pooled
    counts), and the successor sets of two (s, a) pairs overlap as independent uniform b-subsets do (mean
    |S1 & S2| = b^2 / ns). Split: b - 1 uniform cut points of [0, 1], so the largest share has mean H_b / b and the
    share of any one successor (here the lowest-numbered) is Beta(1, b - 1)."""
    from scipy import stats

    ns, b = GARNET_NS, GARNET_B
    rows = P.reshape(-1, ns)
    assert ((rows > 0).sum(1) == b).all()
    counts = (rows > 0).sum(0)
    assert stats.chisquare(counts).pvalue > 1e-3, counts
    succ = (P > 0).reshape(P.shape[0], -1, ns).astype(float)  # [draws, ns * na, ns]
    overlap = np.einsum("dik,djk->dij", succ, succ)
    pairs = overlap[:, ~np.eye(succ.shape[1], dtype=bool)]  # distinct (s, a) pairs of the same task
    var = b * (b / ns) * (1 - b / ns) * (ns - b) / (ns - 1)  # hypergeometric variance of one overlap
    assert abs(pairs.mean() - b * b / ns) < 4 * math.sqrt(var / rows.shape[0]), pairs.mean()  # pairs correlate
    shares = np.sort(rows, axis=1)[:, ::-1][:, :b]
    harmonic = sum(1.0 / k for k in range(1, b + 1))
    largest = shares[:, 0]
    assert abs(largest.mean() - harmonic / b) < 4 * largest.std() / math.sqrt(largest.size), largest.mean()
    first = rows[np.arange(rows.shape[0]), (rows > 0).argmax(1)]
    ks = stats.kstest(first, lambda x: 1 - (1 - np.clip(x, 0, 1)) ** (b - 1))
    assert ks.pvalue > 1e-3, (ks.statistic, ks.pvalue)


def test_garnet_successors_are_uniform_independent_and_the_split_is_uniform_cuts():
    _check_garnet_law(_garnet_draws(sample_garnet))


def _fixed_successors(ns, na, b, seed):  # always states 0 .. b-1, with the right split
    task = sample_garnet(ns, na, b, seed)
    P = np.zeros_like(task.transition)
    P[..., :b] = np.sort(task.transition, axis=-1)[..., ::-1][..., :b]
    return Task.from_arrays(P, np.zeros((ns, na)), max_steps=10)


def _even_split(ns, na, b, seed):  # the right successors, each with probability 1 / b
    task = sample_garnet(ns, na, b, seed)
    return Task.from_arrays((task.transition > 0) / b, np.zeros((ns, na)), max_steps=10)


def _shared_successors(ns, na, b, seed):  # one successor set drawn per task, reused by every (s, a)
    task = sample_garnet(ns, na, b, seed)
    P = np.broadcast_to(task.transition[0, 0], task.transition.shape).copy()
    return Task.from_arrays(P, np.zeros((ns, na)), max_steps=10)


@pytest.mark.parametrize("broken", [_fixed_successors, _even_split, _shared_successors])
def test_garnet_law_check_rejects_broken_samplers(broken):
    with pytest.raises(AssertionError):
        _check_garnet_law(_garnet_draws(broken))
