"""The one rule for "beyond the spread" (a2hlib.stats), on answers worked out by hand."""
import math

import pytest

from a2hlib import stats


def test_unpaired_known_answer():
    # Δ = −3, s.e. = √(1/3 + 1/3), Welch df = (2/3)² / ((1/3)²/2 · 2) = 4, t₀.₉₇₅(4) = 2.776445
    c = stats.compare([1, 2, 3], [4, 5, 6])
    assert c.diff == -3 and c.se == pytest.approx(math.sqrt(2 / 3)) and c.df == pytest.approx(4)
    assert c.threshold == pytest.approx(2.776445 * math.sqrt(2 / 3), rel=1e-6)
    assert c.beyond is True and not c.paired
    assert stats.verdict(c, "lower") == "held" and stats.verdict(c, "higher") == "reversed"
    near = stats.compare([1, 2, 3], [2, 3, 4])  # |Δ| = 1 < 2.267
    assert near.beyond is False and stats.verdict(near, "lower") == "within the spread"


def test_welch_df_with_unequal_spreads():
    # a = [0, 2, 4] (variance 4, n 3) against a constant b: s.e. = √(4/3), df = n_a − 1 = 2
    c = stats.compare([0, 2, 4], [1, 1, 1, 1])
    assert c.df == pytest.approx(2) and c.se == pytest.approx(math.sqrt(4 / 3))


def test_paired_known_answer():
    # differences [1, 0, 1, 0]: mean 0.5, sd √(1/3), s.e. √(1/3)/2, df 3, t₀.₉₇₅(3) = 3.182446
    c = stats.compare([1, 2, 3, 4], [0, 2, 2, 4], paired=True)
    assert c.diff == 0.5 and c.se == pytest.approx(math.sqrt(1 / 3) / 2) and c.df == 3
    assert c.threshold == pytest.approx(3.182446 * math.sqrt(1 / 3) / 2, rel=1e-6) and c.beyond is False
    assert stats.compare([1, 2, float("nan")], [0, 1, 5], paired=True).n_a == 2  # the NaN pair is dropped
    with pytest.raises(ValueError, match="equally many"):
        stats.compare([1, 2], [1], paired=True)


def test_no_spread_and_zero_spread():
    c = stats.compare([1.0], [2.0, 3.0])
    assert c.beyond is None and c.se is None and c.diff == -1.5
    assert stats.verdict(c) == "one seed: no spread" and "no spread" in c.describe()
    same = stats.compare([1, 1], [2, 2])  # identical seeds: any gap is beyond a zero spread
    assert same.se == 0 and same.beyond is True
    assert stats.compare([1, 1], [1, 1]).beyond is False


def test_nan_values_are_left_out_and_empty_refused():
    assert stats.compare([1, 2, 3, float("nan")], [4, 5, 6]).n_a == 3
    with pytest.raises(ValueError, match="nothing to compare"):
        stats.compare([float("nan")], [1.0])
    with pytest.raises(ValueError, match="higher"):
        stats.verdict(stats.compare([1, 2], [3, 4]), "bigger")


def test_formatters():
    assert stats.mean_sd([0.1, 0.2, 0.3]) == "0.200 ± 0.100"
    assert stats.mean_sd([0.1, 0.2, 0.3], digits=1, scale=100) == "20.0 ± 10.0"
    assert stats.mean_sd([0.25, float("nan")]) == "0.250" and stats.mean_sd([]) == "–"
    assert stats.describe([1, 2, 3]) == {"mean": 2.0, "sd": 1.0, "n": 3}
    assert stats.compare([1, 2, 3], [4, 5, 6]).describe(2) == "Δ = -3.00 (threshold 2.27, beyond the spread)"
