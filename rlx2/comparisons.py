"""The paper's comparisons on a task: which pairs, their exact tests, verdicts, and the seeds they need.

The rule (one place; the report and ``rlx2 suite plan`` both use it):

* A pair "X beats Y" is taken in the paper's direction (its % of dense, Table 2).
* The test is the exact one-sided Mann-Whitney test on raw final scores of every finished
  seed (``rlx2.stats.rank_test_p``), in the paper's direction and, for "reversed", the other.
* A profile may name one **primary** comparison, decided before any run: it is tested alone
  at ``ALPHA``, in its declared direction only ("holds" or "unresolved").
* Every other pair of the task whose methods the profile runs at ``MIN_SEEDS`` or more seeds
  forms the task's **family**; both directions of each are Holm-corrected together, so the
  chance of any false "holds" or "reversed" in the family is at most ``ALPHA``. The family is
  fixed by the profile's declared seeds, not by the runs finished so far; a pair still short
  of seeds enters it with p = 1 (conservative for an interim report).
* No verdict with fewer than ``MIN_SEEDS`` finished seeds on a side: "too few seeds (n = a vs b)".

The seeds a pair needs come from ``rlx2.power`` at the paper's gap (in raw units: the gap in
% of dense times dense's mean here) and the spread measured here, at the level the rule
gives the pair (the primary: ``ALPHA``; a family member: ``ALPHA`` over twice the family's
size, Bonferroni's level, a lower bound of Holm's power).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rlx2.paper import PAPER_METHODS, ordered, paper_row
from rlx2.power import CANDIDATE_SEEDS, seeds_needed
from rlx2.stats import ALPHA, MIN_SEEDS, Interval, holm, improvement, rank_test_p

#: ``{method: final scores by seed}`` of one algo and task.
Scores = dict[str, np.ndarray]


@dataclass(frozen=True)
class Pair:
    """"``first`` beats ``second``", with the paper's % of dense of each (None: not in the paper)."""

    first: str
    second: str
    paper_first: float | None = None
    paper_second: float | None = None
    primary: bool = False

    def label(self) -> str:
        def one(method, pct):
            return method if pct is None else f"{method} ({pct:.1f})"
        return f"{one(self.first, self.paper_first)} > {one(self.second, self.paper_second)}"


@dataclass(frozen=True)
class Tested:
    """One pair's evidence: seeds, effect size, exact p-values (raw and Holm-adjusted) and verdict."""

    pair: Pair
    n_first: int
    n_second: int
    effect: Interval | None  # P(first > second) with its bootstrap interval
    p: float | None  # one-sided, the paper's direction
    p_reverse: float | None
    p_adjusted: float | None  # Holm within the family (the primary: p itself)
    p_reverse_adjusted: float | None
    verdict: str


def paper_pairs(algo: str, task: str, methods: list[str], primary: tuple[str, str] | None = None,
                added: tuple[str, ...] = ()) -> list[Pair]:
    """Every pair of the paper's methods among ``methods``, higher published % of dense first; the
    primary comparison (in its declared direction) leads, also where the paper has no figure for it.

    A method ``added`` to a profile (``--add-method``) is paired with every other method present,
    itself first: "holds" then says it beats that method, "reversed" that it is beaten.
    """
    row = paper_row(algo, task)
    published = row[1] if row is not None else {}
    present = sorted((m for m in PAPER_METHODS if m in methods and m in published), key=lambda m: -published[m])
    pairs = [Pair(first, second, published[first], published[second])
             for i, first in enumerate(present) for second in present[i + 1:]
             if primary is None or {first, second} != set(primary)]
    if primary is not None and set(primary) <= set(methods):
        first, second = primary
        pairs.insert(0, Pair(first, second, published.get(first), published.get(second), primary=True))
    new = [m for m in added if m in methods]
    pairs += [Pair(first, second, None, published.get(second)) for i, first in enumerate(new)
              for second in ordered(methods) if second != first and second not in new[:i + 1]]
    return pairs


def declared_enough(pair: Pair, declared: dict[str, int]) -> bool:
    """Whether the profile runs both methods at ``MIN_SEEDS`` or more seeds (so the pair can ever be decided)."""
    return min(declared.get(pair.first, 0), declared.get(pair.second, 0)) >= MIN_SEEDS


def family_size(pairs: list[Pair], declared: dict[str, int]) -> int:
    """Pairs in the Holm family: all but the primary whose methods are both declared at ``MIN_SEEDS`` seeds."""
    return sum(1 for p in pairs if not p.primary and declared_enough(p, declared))


def level(pair: Pair, pairs: list[Pair], declared: dict[str, int]) -> float:
    """The one-sided level at which the rule lets this pair be resolved (Bonferroni's bound for a family member)."""
    return ALPHA if pair.primary else ALPHA / (2 * max(1, family_size(pairs, declared)))


def decide(items: list[tuple[Pair, np.ndarray, np.ndarray, bool]], reps: int, seed: int,
           absent_members: int = 0) -> list[Tested]:
    """Exact tests and verdicts for ``(pair, first's scores, second's scores, in the family)``.

    Both directions of every family member are Holm-corrected together; a member still short
    of seeds counts with p = 1, and so do ``absent_members`` more (pairs of the family with no
    finished run on a side yet). The primary is tested alone, in its direction.
    """
    tests = []
    for pair, x, y, in_family in items:
        enough = min(len(x), len(y)) >= MIN_SEEDS
        tests.append((rank_test_p(x, y), rank_test_p(y, x)) if enough else (None, None))
    members = [i for i, (pair, *_, in_family) in enumerate(items) if in_family and not pair.primary]
    adjusted = holm([1.0 if v is None else v for i in members for v in tests[i]] + [1.0] * (2 * absent_members))
    family = {i: (float(adjusted[2 * k]), float(adjusted[2 * k + 1])) for k, i in enumerate(members)}
    out = []
    for i, (pair, x, y, _) in enumerate(items):
        (p, p_rev), adj, adj_rev = tests[i], None, None
        if p is None:
            verdict = f"too few seeds (n = {len(x)} vs {len(y)})"
        elif pair.primary:
            adj = p
            verdict = "holds" if p < ALPHA else "unresolved"
        elif i in family:
            adj, adj_rev = family[i]
            verdict = "holds" if adj < ALPHA else "reversed" if adj_rev < ALPHA else "unresolved"
        else:
            verdict = "not tested (the profile declares fewer seeds)"
        out.append(Tested(pair, len(x), len(y), improvement(x, y, reps, seed), p, p_rev, adj, adj_rev, verdict))
    return out


def judge_pairs(pairs: list[Pair], scores: Scores, declared: dict[str, int], reps: int, seed: int) -> list[Tested]:
    """``decide`` for one task's pairs (those both of whose methods have finished runs), interim looks marked."""
    def ran(pair):
        return len(scores.get(pair.first, [])) and len(scores.get(pair.second, []))

    items = [(pair, scores[pair.first], scores[pair.second], declared_enough(pair, declared)) for pair in pairs
             if ran(pair)]
    absent = sum(1 for pair in pairs if not ran(pair) and not pair.primary and declared_enough(pair, declared))
    return [interim(tested, declared) for tested in decide(items, reps, seed, absent)]


#: The verdicts a test gives (the rest say why there is none).
DECIDED = ("holds", "reversed", "unresolved")


def interim(tested: Tested, declared: dict[str, int]) -> Tested:
    """``tested`` with a verdict made before both sides have their declared seeds marked as an interim look.

    Why: the rule's error rate is that of one look. A profile reported session after session
    is looked at again and again, so "holds" at 5 of 10 declared seeds is not yet the verdict:
    the one that counts is made when every declared run has finished, and the mark says so
    where the verdict is read, not only in the caveats.
    """
    want = (declared.get(tested.pair.first, 0), declared.get(tested.pair.second, 0))
    if tested.verdict not in DECIDED or (tested.n_first >= want[0] and tested.n_second >= want[1]):
        return tested
    return replace(tested, verdict=f"{tested.verdict} (interim look: {tested.n_first} vs {tested.n_second} of "
                                   f"{want[0]} vs {want[1]} declared seeds)")


@dataclass(frozen=True)
class Planned:
    """What one pair needs: the gap and spreads it is judged at, and the seeds per method that resolve it."""

    pair: Pair
    n_first: int
    n_second: int
    declared: int  # seeds per method the profile runs (the smaller side)
    gap: float | None  # paper's gap in % of dense
    spreads: tuple[float, float] | None  # SD over seeds, % of dense, of each method
    alpha: float
    needed: int | None  # None: more than CANDIDATE_SEEDS[-1], or unknown (see ``why``)
    why: str | None = None  # why ``needed`` is unknown

    def needed_text(self) -> str:
        if self.why:
            return f"unknown: {self.why}"
        return f"{self.needed}" if self.needed is not None else f"more than {CANDIDATE_SEEDS[-1]}"

    def budget_text(self) -> str:
        if self.why:
            return "unknown"
        declared = f"{self.declared} seed{'s' if self.declared != 1 else ''} declared"
        return f"yes ({declared})" if self.needed is not None and self.needed <= self.declared else f"no ({declared})"


def spreads(scores: Scores) -> dict[str, float]:
    """Each method's SD over seeds; a method with one seed gets the task's pooled SD (when any method has two)."""
    own = {m: float(np.std(s, ddof=1)) for m, s in scores.items() if len(s) >= 2}
    dof = sum(len(scores[m]) - 1 for m in own)
    pooled = float(np.sqrt(sum((len(scores[m]) - 1) * own[m] ** 2 for m in own) / dof)) if dof else None
    return {m: own.get(m, pooled) for m in scores if own.get(m, pooled) is not None}


def plan_pairs(pairs: list[Pair], scores: Scores, declared: dict[str, int], assumed_spread: float | None = None,
               sims: int = 2_000, seed: int = 0, alpha: float | None = None) -> list[Planned]:
    """Seeds per method each pair needs at the paper's gap and the spread measured here (or ``assumed_spread``,
    a fraction of dense's mean, for every method), at the rule's level for each pair (or ``alpha``)."""
    dense = scores.get("dense", np.array([]))
    dense_mean = float(np.mean(dense)) if len(dense) else None
    measured = spreads(scores)
    out = []
    for pair in pairs:
        n_x, n_y = len(scores.get(pair.first, [])), len(scores.get(pair.second, []))
        pair_alpha = level(pair, pairs, declared) if alpha is None else alpha
        declared_seeds = min(declared.get(pair.first, 0), declared.get(pair.second, 0))
        gap = None if pair.paper_first is None or pair.paper_second is None else pair.paper_first - pair.paper_second
        why = None
        if gap is None:
            why = "the paper has no gap for this pair"
        elif assumed_spread is None and (not dense_mean or dense_mean <= 0):
            why = ("no dense run with a positive mean yet to measure spreads against "
                   "(`rlx2 suite plan --spread` assumes one)")
        elif assumed_spread is None and (pair.first not in measured or pair.second not in measured):
            why = "no method on this task has two seeds yet (`rlx2 suite plan --spread` assumes one)"
        if why:
            out.append(Planned(pair, n_x, n_y, declared_seeds, gap, None, pair_alpha, None, why))
            continue
        sd = ((assumed_spread, assumed_spread) if assumed_spread is not None else
              (measured[pair.first] / dense_mean, measured[pair.second] / dense_mean))
        needed = seeds_needed(gap / 100.0, sd[0], sd[1], pair_alpha, sims=sims, seed=seed)
        if needed is not None:  # the rule never decides below MIN_SEEDS
            needed = max(needed, MIN_SEEDS)
        out.append(Planned(pair, n_x, n_y, declared_seeds, gap, (100 * sd[0], 100 * sd[1]), pair_alpha, needed))
    return out
