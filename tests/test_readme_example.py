"""The README's "Adding a baseline" example, run exactly as written."""

import csv
import re
from pathlib import Path

from conftest import tiny_config
from rlx2.cli import main
from rlx2.methods import get_method
from rlx2.train import train

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("### Adding a baseline", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


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
