"""The benchmark's summary table (benchmarks/throughput.py), on hand-made measurements."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from throughput import paired_ratios, table  # noqa: E402


def _row(config: str, repeat: int, rate: float) -> dict:
    return {"algo": "td3", "env": "Hopper-v5", "config": config, "repeat": repeat, "steps_per_second": rate,
            "peak_rss_mb": 400.0}


def test_ratios_paired_within_repeats_beside_the_ratio_of_medians():
    rows = [_row("sb3", 0, 100.0), _row("rlx2 90/85", 0, 300.0), _row("sb3", 1, 50.0), _row("rlx2 90/85", 1, 100.0),
            _row("rlx2 90/85", 2, 500.0)]  # repeat 2 has no stable-baselines3 measurement: no pair
    assert paired_ratios(rows, "td3", "rlx2 90/85", "sb3") == [3.0, 2.0]
    lines = table(rows, ["td3"], ["sb3", "rlx2 90/85"]).splitlines()
    assert lines[0].split("|")[5:7] == [" vs SB3 ", " vs SB3 per repeat "]
    # medians: sb3 75, rlx2 300 -> 4.00x; the pairs 3.0 and 2.0 -> 2.00-3.00x
    assert lines[-1].split("|")[5:7] == [" 4.00x ", " 2.00-3.00x "]
    assert lines[-2].split("|")[5:7] == [" 1.00x ", " - "]
