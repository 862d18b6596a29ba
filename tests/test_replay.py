"""n-step sampling and the dynamic capacity rule of the replay buffer, on hand-made data."""

import numpy as np
import pytest
import torch

from rlx2.replay import DynamicCapacity, ReplayBuffer


class FixedIndices:
    """Stands in for the buffer's generator so a test chooses which transitions are sampled."""

    def __init__(self, indices):
        self.indices = np.asarray(indices)

    def integers(self, low, high, size):
        assert size == len(self.indices) and self.indices.max() < high
        self.high = high
        return self.indices


def three_episodes(capacity=16):
    """Transitions 0..7, obs_i = 10 i, next_obs_i = 10 (i + 1), reward_i = i + 1.

    Episode A = 0,1,2 (2 terminal); B = 3,4 (4 truncated by a time limit); C = 5,6,7 (still going).
    """
    buffer = ReplayBuffer(1, 1, capacity, np.random.default_rng(0))
    for i in range(8):
        buffer.add([10.0 * i], [0.1 * i], [0.0], i + 1.0, [10.0 * (i + 1)], terminated=(i == 2), truncated=(i == 4))
    return buffer


# start: (returns, discount, bootstrap obs) for n = 3, gamma = 0.5
NSTEP3 = {
    0: (1 + 0.5 * 2 + 0.25 * 3, 0.0, 30.0),  # three steps, the third terminal: no bootstrap
    1: (2 + 0.5 * 3, 0.0, 30.0),  # stops at the terminal after two steps
    2: (3.0, 0.0, 30.0),
    3: (4 + 0.5 * 5, 0.25, 50.0),  # stops at the truncation, bootstraps with gamma^2
    4: (5.0, 0.5, 50.0),
    5: (6 + 0.5 * 7 + 0.25 * 8, 0.125, 80.0),  # neither: full three steps
}


def test_nstep_sampling_stops_at_terminals_and_truncations(implementation):
    buffer = three_episodes()
    buffer.rng = FixedIndices(list(NSTEP3))
    batch = buffer.sample(6, 3, 0.5)
    assert buffer.rng.high == 8 - 3 + 1  # windows start only where n transitions are stored (the reference's rule)
    for row, (returns, discount, boot) in NSTEP3.items():
        assert batch.returns[row].item() == pytest.approx(returns)
        assert batch.discount[row].item() == pytest.approx(discount)
        assert batch.bootstrap_obs[row].item() == boot
        assert batch.obs[row].item() == 10.0 * row
        assert batch.act[row].item() == pytest.approx(0.1 * row)
    assert batch.valid[0].tolist() == [1, 1, 1]
    assert batch.valid[1].tolist() == [1, 1, 0]
    assert batch.valid[3].tolist() == [1, 1, 0]
    assert batch.rewards[1].tolist() == [2, 3, 0]


def test_windows_start_only_where_a_whole_window_is_stored(implementation):
    buffer = three_episodes()
    starts = buffer.sample(4_000, 3, 0.5).obs[:, 0] / 10
    assert set(starts.tolist()) == {0.0, 1.0, 2.0, 3.0, 4.0, 5.0}  # never 6 or 7
    assert set((buffer.sample(4_000, 1, 0.5).obs[:, 0] / 10).tolist()) == set(map(float, range(8)))


def test_a_buffer_shorter_than_n_samples_from_its_oldest_and_stops_at_the_newest(implementation):
    buffer = ReplayBuffer(1, 1, 8, np.random.default_rng(0))
    for i in range(2):
        buffer.add([10.0 * i], [0.0], [0.0], i + 1.0, [10.0 * (i + 1)], False, False)
    batch = buffer.sample(3, 3, 0.5)
    assert batch.obs[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert batch.returns.tolist() == [2.0, 2.0, 2.0] and batch.discount.tolist() == [0.25, 0.25, 0.25]
    assert batch.bootstrap_obs[:, 0].tolist() == [20.0, 20.0, 20.0]


def test_one_step_sampling_is_the_ordinary_transition(implementation):
    buffer = three_episodes()
    buffer.rng = FixedIndices([2, 4, 5])
    batch = buffer.sample(3, 1, 0.99)
    assert batch.returns.tolist() == [3.0, 5.0, 6.0]
    assert batch.discount.tolist() == pytest.approx([0.0, 0.99, 0.99])
    assert batch.bootstrap_obs[:, 0].tolist() == [30.0, 50.0, 60.0]


def test_ring_overwrites_oldest_and_nstep_follows_the_wrap(implementation):
    buffer = ReplayBuffer(1, 1, 4, np.random.default_rng(0))
    for i in range(6):
        buffer.add([float(i)], [0.0], [0.0], 1.0, [float(i + 1)], False, False)
    assert len(buffer) == 4
    obs, _ = buffer.oldest(4)
    assert obs[:, 0].tolist() == [2.0, 3.0, 4.0, 5.0]
    buffer.rng = FixedIndices([1])  # transition 3; its 3-step window wraps to physical index 0
    batch = buffer.sample(1, 3, 0.5)
    assert batch.returns.item() == pytest.approx(1.75)
    assert batch.bootstrap_obs.item() == 6.0


def test_drop_oldest():
    buffer = three_episodes()
    buffer.drop_oldest(3)
    assert len(buffer) == 5
    assert buffer.oldest(1)[0][0, 0] == 30.0


def filled(n, capacity=2000):
    buffer = ReplayBuffer(1, 1, capacity, np.random.default_rng(0))
    for i in range(n):
        buffer.add([float(i)], [0.0], [0.0], 0.0, [float(i + 1)], False, False)
    return buffer


def test_reference_rule_drops_ten_percent_only_above_threshold_and_min():
    rule = DynamicCapacity(threshold=0.2, min_size=500, window=8, rule="reference")
    buffer = filled(1000)
    assert rule.apply(buffer, lambda obs, act: 0.2) == 0.2
    assert len(buffer) == 1000  # at the threshold: no change
    rule.apply(buffer, lambda obs, act: 0.3)
    assert len(buffer) == 900
    assert buffer.oldest(1)[0][0, 0] == 100.0  # the oldest 10 % went
    small = filled(520)
    rule.apply(small, lambda obs, act: 0.9)
    assert len(small) == 468  # above the minimum, so one whole 10 % cut: it may end below (as the reference)
    rule.apply(small, lambda obs, act: 0.9)
    assert len(small) == 468  # no longer above the minimum


def test_paper_rule_pops_until_the_distance_is_below_threshold():
    rule = DynamicCapacity(threshold=0.2, min_size=100, window=8, rule="paper")
    buffer = filled(1000)
    distance = lambda obs, act: float(np.mean(obs[:, 0] < 300))  # off-policy below obs 300
    assert rule.apply(buffer, distance) == 1.0
    # pops 8 at a time: the window starting at 296 still has 4/8 old entries, at 304 none
    assert buffer.oldest(1)[0][0, 0] == 304.0
    assert len(buffer) == 696
    floor = filled(150)
    rule.apply(floor, lambda obs, act: 1.0)
    assert len(floor) == 100


def test_compiled_sampling_draws_the_numpy_windows(monkeypatch):
    """The same draws give the same batch, bit for bit, on both paths."""
    from rlx2.sparse import kernels

    if kernels.compiled() is None:
        pytest.skip("numba is not importable here")
    batches = {}
    for compiled in (True, False):
        monkeypatch.setattr(kernels, "_KERNELS", False if compiled else None)
        rng = np.random.default_rng(0)
        buffer = ReplayBuffer(4, 2, 500, rng)
        for i in range(700):  # wraps the ring
            buffer.add(rng.normal(size=4), rng.normal(size=2), rng.normal(size=2), rng.normal(), rng.normal(size=4),
                       i % 37 == 36, i % 53 == 52)
        buffer.drop_oldest(30)
        batches[compiled] = [buffer.sample(64, n, 0.9) for n in (1, 3, 5)]
    for got, want in zip(batches[True], batches[False]):
        for name in ("obs", "act", "rewards", "next_obs", "valid", "returns", "bootstrap_obs", "discount"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_discount_powers_are_repeated_float32_products():
    from rlx2.replay import discount_powers

    assert discount_powers(0.5, 3).tolist() == [1.0, 0.5, 0.25, 0.125]
    powers = discount_powers(0.99, 4)
    assert powers.dtype == np.float32 and powers[3] == np.float32(np.float32(np.float32(0.99) * np.float32(0.99)) *
                                                                  np.float32(0.99))
