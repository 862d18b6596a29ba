"""Statistics: exact rank tests, Holm, the verdict rule, the power simulation, and bootstrap
intervals of rliable's metrics (checked against rliable itself)."""

import contextlib
import itertools
import math

import numpy as np
import pytest
from rliable import library as rly
from rliable import metrics

from rlx2.comparisons import Pair, decide, paper_pairs, plan_pairs
from rlx2.power import critical_u, power, seeds_needed
from rlx2.stats import (AGGREGATES, aggregate_metrics, holm, improvement, improvement_probability, interval,
                        normalised_aggregates, performance_profiles, rank_test_p, score_distribution)

@contextlib.contextmanager
def seeded(seed):
    """rliable's bootstrap draws from NumPy's global generator: seed it for the comparison, then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --- exact one-sided Mann-Whitney p-values, by hand ---------------------------------------------------------


def test_five_runs_all_above_five_others_is_one_split_in_252():
    assert rank_test_p([5, 6, 7, 8, 9], [0, 1, 2, 3, 4]) == pytest.approx(1 / 252)
    assert math.comb(10, 5) == 252
    assert rank_test_p([0, 1, 2, 3, 4], [5, 6, 7, 8, 9]) == pytest.approx(1.0)  # the other direction: every split


def test_one_swapped_pair_doubles_the_p_value():
    # Ranks of x {5, 7, 8, 9, 10}: only {6..10} and this split have a rank sum >= 39, so p = 2/252.
    assert rank_test_p([4, 6, 7, 8, 9], [0, 1, 2, 3, 5]) == pytest.approx(2 / 252)


def test_ties_count_one_half_and_the_p_value_stays_exact():
    # Pooled {1, 1, 1, 0}; x = {1, 1} has U = 1.5 + 1.5 = 3. Of the 6 splits, the 3 that give x two 1s have U = 3,
    # the 3 that give x {1, 0} have U = 1: p = 3/6.
    assert rank_test_p([1, 1], [1, 0]) == pytest.approx(0.5)
    # All tied: every split has the same U, so p = 1.
    assert rank_test_p([2, 2, 2], [2, 2]) == pytest.approx(1.0)


def test_unequal_counts_are_exact_too():
    assert rank_test_p([10, 11, 12, 13, 14], [1, 2, 3]) == pytest.approx(1 / math.comb(8, 3))  # 1/56


def test_the_exact_p_value_agrees_with_brute_force_enumeration():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.integers(0, 4, size=4).astype(float), rng.integers(0, 4, size=3).astype(float)
        pooled = np.concatenate([x, y])

        def u(a, b):
            return sum((ai > bj) + 0.5 * (ai == bj) for ai in a for bj in b)

        observed, count, total = u(x, y), 0, 0
        for chosen in itertools.combinations(range(7), 4):
            rest = [i for i in range(7) if i not in chosen]
            count += u(pooled[list(chosen)], pooled[rest]) >= observed - 1e-9
            total += 1
        assert rank_test_p(x, y) == pytest.approx(count / total)


def test_holm_by_hand():
    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 = 0.04 -> kept monotone: 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert len(holm([])) == 0


# --- the verdict rule ----------------------------------------------------------------------------------------

TOP, BOTTOM = np.arange(10.0, 15.0), np.arange(5.0)  # five runs all above five


def verdicts(items):
    return [t.verdict for t in decide(items, reps=200, seed=0)]


def test_no_verdict_under_five_seeds_a_side():
    pair = Pair("a", "b")
    assert verdicts([(pair, TOP[:4], BOTTOM, True)]) == ["too few seeds (n = 4 vs 5)"]
    assert verdicts([(pair, TOP[:2], BOTTOM[:2], True)]) == ["too few seeds (n = 2 vs 2)"]


def test_a_family_is_holm_corrected_over_both_directions_of_each_pair():
    a_b, c_d = Pair("a", "b"), Pair("c", "d")
    # One pair: p = 1/252 in its direction, adjusted x 2 (both directions) = 0.008: holds; reversed data: reversed.
    tested = decide([(a_b, TOP, BOTTOM, True), (c_d, BOTTOM, TOP, True)], reps=200, seed=0)
    assert [t.verdict for t in tested] == ["holds", "reversed"]
    assert tested[0].p == pytest.approx(1 / 252) and tested[0].p_adjusted == pytest.approx(4 / 252)
    # Mixed scores: p = 0.21, nothing survives.
    mixed = np.array([1.0, 3, 5, 7, 9]), np.array([0.0, 2, 4, 6, 8])
    assert verdicts([(a_b, *mixed, True)]) == ["unresolved"]
    # 13 pairs, each 1/252 alone: 26 hypotheses, the smallest adjusted to 26/252 > 0.05: a family too large to
    # resolve at five seeds, however clean the separation.
    many = [(Pair(f"x{i}", f"y{i}"), TOP, BOTTOM, True) for i in range(13)]
    assert set(verdicts(many)) == {"unresolved"}


def test_a_family_member_short_of_seeds_still_counts_against_the_others():
    full, short = (Pair("a", "b"), TOP, BOTTOM, True), (Pair("c", "d"), TOP[:3], BOTTOM, True)
    tested = decide([full, short], reps=200, seed=0)
    assert tested[0].p_adjusted == pytest.approx(4 / 252)  # two pairs, four hypotheses, the short one at p = 1
    assert tested[1].verdict == "too few seeds (n = 3 vs 5)"


def test_the_primary_comparison_is_tested_alone_in_its_direction():
    primary = Pair("rlx2", "rigl", primary=True)
    mixed = np.array([2.0, 4, 6, 8, 10]), np.array([0.0, 1, 3, 5, 7])  # p = 0.075
    tested = decide([(primary, TOP, BOTTOM, True), *[(Pair(f"x{i}", f"y{i}"), TOP, BOTTOM, True) for i in range(13)]],
                    reps=200, seed=0)
    assert tested[0].verdict == "holds" and tested[0].p_adjusted == tested[0].p  # no correction for the family
    assert verdicts([(primary, BOTTOM, TOP, True)]) == ["unresolved"]  # never "reversed": one direction declared
    assert verdicts([(primary, *mixed, True)]) == ["unresolved"]


def test_the_primary_pair_leads_in_its_declared_direction_and_leaves_the_family():
    pairs = paper_pairs("td3", "Walker2d-v5", ["dense", "static", "rigl", "rlx2"], primary=("rlx2", "rigl"))
    assert [(p.first, p.second, p.primary) for p in pairs] == [
        ("rlx2", "rigl", True), ("rlx2", "static", False), ("static", "rigl", False)]
    assert pairs[0].label() == "rlx2 (98.1) > rigl (35.7)"


# --- the power simulation ------------------------------------------------------------------------------------


def test_the_critical_u_of_five_against_five_by_hand():
    # P(U >= 21) = 12/252 = 0.048 (U = 25, 24, 23, 22, 21 in 1, 1, 2, 3, 5 splits), P(U >= 20) = 19/252 = 0.075
    assert critical_u(5, 0.05) == 21
    assert critical_u(5, 1 / 252 + 1e-9) == 25 and critical_u(5, 1 / 252) == np.inf


def test_power_agrees_with_scipys_own_test_on_the_same_draws():
    from scipy import stats

    rng = np.random.default_rng([3, 8])
    x, y = 0.7 + 0.5 * rng.standard_normal((2_000, 8)), 0.5 * rng.standard_normal((2_000, 8))
    direct = np.mean(stats.mannwhitneyu(x, y, alternative="greater", method="exact", axis=1).pvalue < 0.05)
    assert power(0.7, 0.5, 0.5, 8, 0.05, seed=3) == direct


def test_seeds_needed_is_deterministic_and_never_grows_with_the_gap_or_shrinking_spread():
    assert seeds_needed(0.6, 0.5, 0.5, 0.05) == seeds_needed(0.6, 0.5, 0.5, 0.05)
    gaps = [seeds_needed(gap, 0.5, 0.5, 0.0125) for gap in (0.3, 0.45, 0.6, 0.9, 1.5)]
    assert all(n is not None for n in gaps) and gaps == sorted(gaps, reverse=True)
    spreads = [seeds_needed(0.6, s, s, 0.0125) for s in (0.8, 0.6, 0.4, 0.2)]
    assert spreads == sorted(spreads, reverse=True) and spreads[-1] == 5
    assert seeds_needed(0.0, 0.5, 0.5, 0.05) is None  # no gap: never resolved
    assert seeds_needed(0.05, 0.7, 0.7, 0.01) is None  # more than the largest candidate


def test_a_plan_uses_the_measured_spread_and_says_what_it_cannot_know():
    declared = {"dense": 5, "rigl": 5, "rlx2": 5}
    pairs = paper_pairs("td3", "Walker2d-v5", list(declared), primary=("rlx2", "rigl"))
    assert "no dense run" in plan_pairs(pairs, {}, declared)[0].why
    scores = {"dense": np.array([900.0, 1100.0]), "rlx2": np.array([1000.0]), "rigl": np.array([300.0, 500.0])}
    (planned,) = plan_pairs(pairs, scores, declared)
    # dense mean 1000; rigl's SD 141.4 (14.1 % of dense); rlx2 has one seed: the pooled SD of dense and rigl, also 141.4
    assert planned.spreads == pytest.approx((14.142, 14.142), abs=1e-3) and planned.gap == pytest.approx(62.4)
    assert planned.alpha == 0.05 and planned.needed == 5 and planned.budget_text() == "yes (5 seeds declared)"
    (assumed,) = plan_pairs(pairs, {}, declared, assumed_spread=0.5)
    assert assumed.spreads == (50.0, 50.0) and assumed.needed > 5


# --- bootstrap intervals of rliable's metrics ----------------------------------------------------------------

X = np.array([[0.1, 0.5], [0.9, 0.3], [0.4, 0.8], [0.2, 0.6]])  # 4 runs x 2 tasks


def test_aggregates_by_hand_and_equal_to_rliables():
    # IQM: the middle half of the 8 sorted values 0.3 0.4 0.5 0.6; median/mean of the task means 0.4 and 0.55
    assert AGGREGATES["IQM"](X) == pytest.approx(0.45)
    assert AGGREGATES["Median"](X) == pytest.approx(0.475)
    assert AGGREGATES["Mean"](X) == pytest.approx(0.475)
    assert AGGREGATES["Optimality gap"](X) == pytest.approx(1 - 0.475)
    theirs = {"IQM": metrics.aggregate_iqm, "Median": metrics.aggregate_median, "Mean": metrics.aggregate_mean,
              "Optimality gap": metrics.aggregate_optimality_gap}
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.normal(0.5, 0.5, size=(int(rng.integers(2, 9)), int(rng.integers(1, 5))))
        for name, func in AGGREGATES.items():
            assert func(scores) == pytest.approx(theirs[name](scores)), name
        other = np.round(rng.normal(0.5, 0.5, size=(int(rng.integers(1, 7)), scores.shape[1])), 1)
        scores = np.round(scores, 1)  # ties too
        assert improvement_probability(scores, other) == pytest.approx(metrics.probability_of_improvement(scores, other))
        taus = np.linspace(-0.5, 1.5, 9)
        assert score_distribution(scores, taus) == pytest.approx(rly.create_performance_profile(
            {"m": scores}, taus, reps=2)[0]["m"])


def test_intervals_agree_with_rliables_within_bootstrap_noise():
    rng = np.random.default_rng(2)
    scores = {"a": rng.normal(0.8, 0.3, size=(10, 3)), "b": rng.normal(0.5, 0.4, size=(10, 3))}
    ours = aggregate_metrics(scores, reps=4_000, seed=0)
    with seeded(0):
        points, intervals = rly.get_interval_estimates(
            scores, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]), reps=4_000)
    for method in scores:
        for i, name in enumerate(("IQM", "Mean")):
            assert ours[method][name][0] == pytest.approx(points[method][i])
            assert ours[method][name][1] == pytest.approx(intervals[method][0][i], abs=0.02)
            assert ours[method][name][2] == pytest.approx(intervals[method][1][i], abs=0.02)
    p, low, high = improvement(scores["a"][:, 0], scores["b"][:, 0], reps=4_000, seed=0)
    with seeded(0):
        pt, ci = rly.get_interval_estimates({"ab": (scores["a"][:, :1], scores["b"][:, :1])},
                                            metrics.probability_of_improvement, reps=4_000)
    assert p == pytest.approx(float(np.squeeze(pt["ab"])))
    assert (low, high) == pytest.approx(tuple(np.ravel(ci["ab"])), abs=0.03)


def test_intervals_are_repeatable_and_leave_the_global_generator_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    a = aggregate_metrics({"a": X, "b": X + 0.2}, reps=300, seed=7)
    assert a == aggregate_metrics({"a": X, "b": X + 0.2}, reps=300, seed=7)
    assert np.array_equal(np.random.get_state()[1], before)
    point, low, high = a["a"]["IQM"]
    assert low <= point <= high and point == pytest.approx(0.45)
    assert interval([X], lambda s: s.mean(axis=(-2, -1)), 300, 1) != interval([X], lambda s: s.mean(axis=(-2, -1)),
                                                                              300, 2)
    profiles, bands = performance_profiles({"a": X}, np.linspace(0, 1, 5), reps=100, seed=0)
    assert profiles["a"].shape == (5,) and bands["a"].shape == (2, 5)


def test_unequal_seed_counts_use_every_seed():
    # static 775.2 and 305.8 against set 549.2 (the reference profile's seeds 0-1 and 0): one win, one loss
    assert improvement(np.array([775.2, 305.8]), np.array([549.2]), reps=200, seed=0)[0] == pytest.approx(0.5)
    # per task with different counts, averaged over tasks: (0.5 + 1.0) / 2
    assert improvement([np.array([775.2, 305.8]), np.array([3.0])], [np.array([549.2]), np.array([1.0, 2.0])],
                       reps=200, seed=0)[0] == pytest.approx(0.75)


def test_normalised_aggregates_carry_densess_uncertainty():
    raw = np.array([[500.0], [600.0], [700.0], [550.0], [650.0]])
    steady = normalised_aggregates(raw, [np.full(5, 1000.0)], [0.0], reps=1_000, seed=0)
    shaky = normalised_aggregates(raw, [np.array([600.0, 1400.0, 800.0, 1200.0, 1000.0])], [0.0], reps=1_000, seed=0)
    assert steady["Mean"][0] == pytest.approx(0.6) and shaky["Mean"][0] == pytest.approx(0.6)
    assert shaky["Mean"][2] - shaky["Mean"][1] > 1.5 * (steady["Mean"][2] - steady["Mean"][1])
    itself = normalised_aggregates(raw, None, [0.0], reps=200, seed=0)
    assert itself["Mean"] == pytest.approx((1.0, 1.0, 1.0))  # dense against its own draw is 1 by definition


def test_a_verdict_before_the_declared_seeds_is_marked_as_an_interim_look():
    from rlx2.comparisons import judge_pairs

    pairs = paper_pairs("td3", "Walker2d-v5", ["rlx2", "static"])  # rlx2 > static alone: 1/252 x 2
    scores = {"rlx2": TOP, "static": BOTTOM}
    (early,) = judge_pairs(pairs, scores, {"rlx2": 10, "static": 10}, reps=200, seed=0)
    assert early.verdict == "holds (interim look: 5 vs 5 of 10 vs 10 declared seeds)"
    assert early.p_adjusted == pytest.approx(2 / 252)  # the test itself is the same
    (final,) = judge_pairs(pairs, scores, {"rlx2": 5, "static": 5}, reps=200, seed=0)
    assert final.verdict == "holds"
    (short,) = judge_pairs(pairs, {"rlx2": TOP[:3], "static": BOTTOM}, {"rlx2": 10, "static": 10}, reps=200, seed=0)
    assert short.verdict == "too few seeds (n = 3 vs 5)"  # no verdict, so nothing to mark


def test_the_family_is_the_declared_one_even_before_every_pair_has_runs():
    from rlx2.comparisons import judge_pairs

    declared = {"static": 5, "rigl": 5, "rlx2": 5}
    pairs = paper_pairs("td3", "Walker2d-v5", list(declared))  # rlx2 > static, rlx2 > rigl, static > rigl
    alone = judge_pairs(pairs, {"rlx2": TOP, "static": BOTTOM}, declared, reps=200, seed=0)
    # one pair with runs, two without: still six directional hypotheses, 1/252 x 6
    assert len(alone) == 1 and alone[0].p_adjusted == pytest.approx(6 / 252)
