"""The README's examples, run exactly as written: "Adding a baseline" (the module, and the commands that put the new
method beside a profile's finished runs) and "A method with its own procedure"."""

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


def readme_section(title: str = "Adding a baseline") -> str:
    """The README's ``### title`` section, up to the next heading."""
    return re.split(r"\n##+ ", README.read_text().split(f"### {title}\n", 1)[1], maxsplit=1)[0]


def readme_example(title: str = "Adding a baseline") -> str:
    return re.search(r"```python\n(.*?)```", readme_section(title), re.S).group(1)


def readme_commands(block: int, title: str = "Adding a baseline") -> list[list[str]]:
    """The ``rlx2`` commands of the section's ``block``-th bash block, comments dropped."""
    text = re.findall(r"```bash\n(.*?)```", readme_section(title), re.S)[block]
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


def test_readme_procedure_example_runs_and_its_run_reads_like_any_other(tmp_path, monkeypatch, capsys):
    from rlx2 import load_agent
    from rlx2.evaluation import evaluate_run
    from rlx2.results import collect

    monkeypatch.chdir(tmp_path)
    title = "A method with its own procedure"
    (tmp_path / "my_procedure.py").write_text(readme_example(title))
    (command,) = readme_commands(0, title)
    assert command[:2] == ["rlx2", "run"] and command[command.index("--method") + 1] == "random-data"
    flags = ["--steps", "900", "--warmup-steps", "300", "--eval-every", "400", "--eval-episodes", "2",
             "--batch-size", "64", "--log-every", "300", "--out", str(tmp_path / "out")]
    steps = command.index("--steps")  # the README's budget, cut to a test's
    assert main([*command[1:steps], *command[steps + 2:], *flags]) == 0
    capsys.readouterr()
    run_dir = tmp_path / "out/td3/Hopper-v5/random-data/seed-0"
    with open(run_dir / "evaluations.csv") as f:
        assert [int(row["step"]) for row in csv.DictReader(f)] == [400, 800, 900]  # evaluation_due
    cfg = get_method("random-data")().resolve(tiny_config(method="random-data", steps=900, warmup_steps=300,
                                                          eval_every=400, eval_episodes=2, batch_size=64,
                                                          log_every=300))
    collected = collect([cfg], tmp_path / "out", "adhoc", "adhoc")
    assert collected.missing == [] and len(collected.table) == 4  # three evaluations and the final score
    agent = load_agent(run_dir)  # its model.pt is the agent's state_dict
    assert agent.cfg.method == "random-data"
    last = float(list(csv.DictReader(open(run_dir / "evaluations.csv")))[-1]["mean_return"])
    assert evaluate_run(run_dir)["mean_return"] == last  # the run's own protocol
