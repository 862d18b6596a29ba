"""The README's "Adding a baseline" example, run exactly as written: the module, and the commands that put the new
method beside a profile's finished runs."""

import csv
import re
import shlex
import sys
from pathlib import Path

import pandas as pd

from conftest import tiny_config
from rlx2.cli import main
from rlx2.methods import get_method
from rlx2.suite import load_suite
from rlx2.train import train

README = Path(__file__).resolve().parents[1] / "README.md"
sys.path.insert(0, str(Path(__file__).parent / "fixtures" / "report"))


def readme_section() -> str:
    return README.read_text().split("### Adding a baseline", 1)[1].split("\n## ", 1)[0]


def readme_example() -> str:
    return re.search(r"```python\n(.*?)```", readme_section(), re.S).group(1)


def readme_commands(block: int) -> list[list[str]]:
    """The ``rlx2`` commands of the section's ``block``-th bash block, comments dropped."""
    text = re.findall(r"```bash\n(.*?)```", readme_section(), re.S)[block]
    return [shlex.split(line, comments=True) for line in text.splitlines() if line.strip()]


def test_readme_baseline_example_registers_lists_and_trains(tmp_path, capsys):
    module = tmp_path / "my_methods.py"
    module.write_text(readme_example())
    assert main(["methods", "--methods-module", str(module)]) == 0
    assert "noisy-rigl" in capsys.readouterr().out
    method = get_method("noisy-rigl")
    assert method.n_step == 3
    result = train(tiny_config(method="noisy-rigl", steps=900, eval_every=400), tmp_path / "out", progress=False)
    assert result["status"] == "finished"
    with open(tmp_path / "out/td3/Hopper-v5/noisy-rigl/seed-0/topology.csv") as f:
        updates = [row for row in csv.DictReader(f) if row["step"] != "0"]
    assert {row["optimizer_step"] for row in updates if row["network"] == "critic"} == {"200"}


def test_readme_add_method_runs_only_the_new_method_beside_finished_records(tmp_path, monkeypatch, capsys):
    from make_fixture import write_records

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_methods.py").write_text(readme_example())
    results = tmp_path / "results" / "smoke" / "smoke"
    profile = load_suite("smoke")
    write_records(results, profile.runs, {cfg.method: [400.0 + 10 * i] for i, cfg in enumerate(profile.runs)})
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}

    commands = readme_commands(1)
    assert [c[:3] for c in commands] == [["rlx2", "suite", "run"], ["rlx2", "suite", "status"], ["rlx2", "report", "smoke"]]
    assert main(commands[0][1:]) == 0
    assert "1/1 runs finished (0 already done" in capsys.readouterr().out
    after = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    assert {p: after[p] for p in before} == before  # the profile's records untouched
    new_runs = {p.relative_to(results).parts[:4] for p in set(after) - set(before)}
    assert new_runs == {("td3", "Hopper-v5", "noisy-rigl", "seed-0")}  # only the new method's run executed

    assert main(commands[1][1:]) == 0
    status = capsys.readouterr().out
    assert re.search(r"td3/Hopper-v5/noisy-rigl/seed-0 +done", status) and "9 done" in status

    assert main(commands[2][1:]) == 0
    report = tmp_path / "reports" / "smoke" / "smoke"
    index = (report / "index.md").read_text()
    assert "9 of 9 finished" in index and "noisy-rigl added to the profile's" in index
    finals = pd.read_csv(report / "runs.csv").query("metric == 'final_score'")
    assert "noisy-rigl" in set(finals.method) and len(finals) == 9
    assert "noisy-rigl" in pd.read_csv(report / "table_paper.csv").columns
    assert "noisy-rigl" in set(pd.read_csv(report / "table_improvement.csv").Method)
    ordering = pd.read_csv(report / "table_ordering.csv")
    against = {row.split(" > ")[1].split(" (")[0] for row in ordering["Paper's order"] if row.startswith("noisy-rigl >")}
    assert against == {cfg.method for cfg in profile.runs}  # its verdict against each of the profile's methods
    assert set(ordering[ordering["Paper's order"].str.startswith("noisy-rigl")].Verdict) == {"too few seeds (n = 1 vs 1)"}
    assert (report / "figures" / "learning_curves.png").stat().st_size > 1_000  # one dense seed: no ratio figures
    assert "noisy-rigl" in set(pd.read_csv(report / "runs.csv").query("metric == 'eval_return'").method)
    assert {p: after[p] for p in before} == {p: p.read_bytes() for p in before}  # still untouched
