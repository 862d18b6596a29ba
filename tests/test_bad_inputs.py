"""Every command with broken inputs, as a tester tries them: each case ends with the right exit status and one line
``rlx2 <command>: <what>`` naming the culprit, and nothing in the workspace is written, moved or deleted.

The workspace holds a finished tiny run (for ``evaluate``), the report fixture's records, a user's file and a user's
directory; each case may break one thing in its own copy first.
"""

import hashlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

from conftest import tiny_config
from rlx2.cli import main
from rlx2.records import RunDirectory
from rlx2.train import train

FIXTURE = Path(__file__).parent / "fixtures" / "report"
RUN = "adhoc/td3/Hopper-v5/static/seed-0"
DUPLICATE = 'from rlx2.methods import Method, register\n\n\n@register\nclass Mine(Method):\n    name = "rigl"\n' \
            '    description = "takes a built-in name"\n'


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("workspace")
    train(tiny_config(method="static", steps=900, warmup_steps=500, eval_every=300, eval_episodes=1,
                      hidden_sizes=(16,)), root / "adhoc", progress=False)
    shutil.copytree(FIXTURE / "results", root / "records")
    (root / "a-file").write_text("a user's file\n")
    (root / "user-dir").mkdir()
    (root / "user-dir" / "notes.txt").write_text("a user's notes\n")
    (root / "dup.py").write_text(DUPLICATE)
    (root / "binary.toml").write_bytes(bytes(range(256)))
    return root


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def setup_nothing(w: Path) -> None:
    pass


SETUPS = {
    "truncated model": lambda w: (w / RUN / "model.pt").write_bytes((w / RUN / "model.pt").read_bytes()[:500]),
    "pickled model": lambda w: (w / RUN / "model.pt").write_bytes(pickle.dumps({"weights": Path("x")}, protocol=4)),
    "wider config": lambda w: edit_json(w / RUN / "config.json", lambda d: d["config"].update(hidden_sizes=[64])),
    "garbage sizes": lambda w: edit_json(w / RUN / "config.json", lambda d: d["env"].update(obs_dim="abc")),
    "config array": lambda w: (w / RUN / "config.json").write_text("[1, 2]"),
    "foreign method": lambda w: edit_json(w / RUN / "config.json", lambda d: d["config"].update(method="nobody-has-it")),
    "videos there": lambda w: ((w / "videos").mkdir(), (w / "videos/static-seed-0-episode-0.mp4").write_text("old")),
    "link": lambda w: (w / "link").symlink_to(w / "user-dir"),
    "duplicate run": lambda w: shutil.copytree(w / RUN, w / "adhoc/copy" / RUN.split("/", 1)[1]),
    "two settings": lambda w: (shutil.copytree(w / RUN, w / "adhoc/td3/Hopper-v5/static/seed-1"),
                               edit_json(w / "adhoc/td3/Hopper-v5/static/seed-1/config.json",
                                         lambda d: d["config"].update(seed=1, lr=1e-3))),
}
LONG = "x" * 300

# (case, setup, argv with {w} for the workspace, exit status, what the one line names)
CASES = [
    ("no command", None, [], 2, "rlx2: the following arguments are required: command"),
    ("unknown command", None, ["frob"], 2, "rlx2: argument command: invalid choice: 'frob'"),
    ("unknown flag", None, ["run", "--nope"], 2, "rlx2 run: unrecognized arguments: --nope (see rlx2 run --help)"),
    ("flag without its value", None, ["run", "--steps"], 2, "rlx2 run: argument --steps: expected one argument"),
    ("suite without subcommand", None, ["suite"], 2, "rlx2 suite: the following arguments are required"),
    ("flops: not an integer", None, ["flops", "--obs-dim", "abc", "--act-dim", "3"], 2, "not an integer: 'abc'"),
    ("run: empty --out", None, ["run", "--out", ""], 2, "rlx2 run: out='': is empty"),
    ("run: a name too long for the filesystem", None, ["run", "--out", "{w}/" + LONG], 2, "is 300 bytes long"),
    ("run: --config is binary", None, ["run", "--config", "{w}/binary.toml", "--out", "{w}/o"], 2,
     "is not a text (TOML) file"),
    ("run: --config is a directory", None, ["run", "--config", "{w}/user-dir", "--out", "{w}/o"], 2,
     "cannot be read (Is a directory)"),
    ("run: sb3 with the dynamic buffer", None, ["run", "--method", "sb3", "--dynamic-buffer", "--out", "{w}/o"], 2,
     "dynamic-buffer=True: the sb3 method cannot honour it"),
    ("run: sb3 with n-step targets", None, ["run", "--method", "sb3", "--n-step", "3", "--out", "{w}/o"], 2,
     "n-step=3: the sb3 method cannot honour it"),
    ("run: sb3 with a sparsity", None, ["run", "--method", "sb3", "--actor-sparsity", "0.5", "--out", "{w}/o"], 2,
     "actor-sparsity=0.5: the sb3 method trains dense networks"),
    ("run: dense with a sparsity", None, ["run", "--method", "dense", "--critic-sparsity", "0.5", "--out", "{w}/o"],
     2, "critic-sparsity=0.5: the dense method trains dense networks"),
    ("run: a module takes a built-in name", None, ["run", "--methods-module", "{w}/dup.py", "--out", "{w}/o"], 2,
     "method name 'rigl' is already registered by rlx2.baselines.rigl.RigL (dup.py, line 4"),
    ("methods: a module takes a built-in name", None, ["methods", "--methods-module", "{w}/dup.py"], 2,
     "rlx2 methods: methods module"),
    ("methods: no such module", None, ["methods", "--methods-module", "{w}/nope.py"], 2, "'{w}/nope.py': no such file"),
    ("evaluate: no run there", None, ["evaluate", "{w}/nowhere"], 2, "not a run directory with a readable config"),
    ("evaluate: truncated model.pt", "truncated model", ["evaluate", "{w}/" + RUN], 2,
     RUN + "/model.pt cannot be read"),
    ("evaluate: model.pt is a pickle", "pickled model", ["evaluate", "{w}/" + RUN], 2,
     "model.pt holds more than weights and masks"),
    ("evaluate: widths no longer match", "wider config", ["evaluate", "{w}/" + RUN], 2,
     "model.pt does not fit the agent its config.json describes"),
    ("evaluate: garbage sizes", "garbage sizes", ["evaluate", "{w}/" + RUN], 2, "env.obs_dim='abc': not a size"),
    ("evaluate: config.json not an object", "config array", ["evaluate", "{w}/" + RUN], 2,
     "not a run directory with a readable config.json"),
    ("evaluate: a method of a module not given", "foreign method", ["evaluate", "{w}/" + RUN], 2,
     "method='nobody-has-it': unknown method"),
    ("evaluate: no episodes", None, ["evaluate", "{w}/" + RUN, "--episodes", "0"], 2, "episodes=0"),
    ("evaluate: a billion episodes", None, ["evaluate", "{w}/" + RUN, "--episodes", "1e9"], 2, "episodes=1000000000"),
    ("evaluate: a seed too large", None, ["evaluate", "{w}/" + RUN, "--seed", "1e30"], 2, "seed=1000000000000000"),
    ("evaluate: --video is a file", None, ["evaluate", "{w}/" + RUN, "--video", "{w}/a-file"], 2, "is a file"),
    ("evaluate: empty --video", None, ["evaluate", "{w}/" + RUN, "--video", ""], 2, "video='': is empty"),
    ("evaluate: videos already there", "videos there", ["evaluate", "{w}/" + RUN, "--video", "{w}/videos"], 2,
     "already holds {w}/videos/static-seed-0-episode-0.mp4"),
    ("suite run: empty --results", None, ["suite", "run", "smoke", "--results", ""], 2, "results='': is empty"),
    ("suite run: results of other settings", None, ["suite", "run", "smoke", "--results", "{w}/records", "--quiet"],
     2, "records/td3/Hopper-v5/dense/seed-0/config.json: holds a run with other settings"),
    ("suite run: add an unknown method", None, ["suite", "run", "smoke", "--add-method", "nope"], 2,
     "add-method='nope': unknown method"),
    ("suite run: add a method of the profile", None, ["suite", "run", "smoke", "--add-method", "rigl"], 2,
     "add-method='rigl': already a method of profile smoke"),
    ("suite run: add a method twice", None, ["suite", "run", "smoke", "--add-method", "sb3", "--add-method", "sb3"],
     2, "add-method='sb3': given twice"),
    ("suite run: a binary suite file", None, ["suite", "run", "{w}/binary.toml"], 2, "cannot be read as text"),
    ("suite plan: a spread that is not a number", None, ["suite", "plan", "smoke", "--spread", "nan"], 2,
     "spread=nan"),
    ("report: empty --out", None, ["report", str(FIXTURE / "suite.toml"), "--results", "{w}/records", "--out", ""],
     2, "out='': is empty"),
    ("report: --out is a user's file", None,
     ["report", str(FIXTURE / "suite.toml"), "--results", "{w}/records", "--out", "{w}/a-file"], 2,
     "is a file, not a report directory"),
    ("report: --out is a user's directory", None,
     ["report", str(FIXTURE / "suite.toml"), "--results", "{w}/records", "--out", "{w}/user-dir"], 2,
     "is a directory that holds no report"),
    ("report: --out is a link", "link",
     ["report", str(FIXTURE / "suite.toml"), "--results", "{w}/records", "--out", "{w}/link"], 2,
     "is a symbolic link"),
    ("report: results of other settings", None, ["report", "smoke", "--results", "{w}/records"], 2,
     "config.json: holds a run with other settings"),
    ("report: a suite and --runs", None, ["report", "smoke", "--runs", "{w}/adhoc"], 2,
     "give it without a suite"),
    ("report: neither a suite nor --runs", None, ["report"], 2, "give a suite (e.g. rlx2 report mujoco) or --runs"),
    ("report: --runs not a directory", None, ["report", "--runs", "{w}/nowhere"], 2, "no such directory"),
    ("report: --runs holding one run twice", "duplicate run", ["report", "--runs", "{w}/adhoc"], 2,
     "hold the same run td3/Hopper-v5/static/seed-0"),
    ("report: --runs holding one method at two settings", "two settings", ["report", "--runs", "{w}/adhoc"], 2,
     "runs of td3/Hopper-v5/static with other settings (lr)"),
    ("runs: not a directory", None, ["runs", "{w}/nowhere"], 2, "rlx2 runs: dir="),
    ("runs: a file", None, ["runs", "{w}/a-file"], 2, "a-file': not a directory"),
    ("suite status: --results is a file", None, ["suite", "status", "smoke", "--results", "{w}/a-file"], 2,
     "is a file, not a results directory"),
    ("evaluate: --render without a display", "no display", ["evaluate", "{w}/" + RUN, "--render"], 2,
     "render=True: needs a display"),
]


def snapshot(root: Path) -> dict:
    """Every file and directory under ``root`` with its content's hash: what a command must leave as it was."""
    return {p.relative_to(root): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink()
            else "dir" for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize(("case", "setup", "argv", "code", "names"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_touches_nothing(template, tmp_path, monkeypatch, capsys, case, setup, argv, code,
                                                   names):
    work = tmp_path / "w"
    shutil.copytree(template, work, symlinks=True)
    monkeypatch.chdir(work)
    if setup == "no display":  # GLFW would abort the whole process
        monkeypatch.delenv("DISPLAY", raising=False)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    SETUPS.get(setup, setup_nothing)(work)
    before = snapshot(work)
    argv = [a.replace("{w}", str(work)) for a in argv]
    try:
        got = main(argv)
    except SystemExit as exc:
        got = exc.code
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert got == code, err
    assert len(err) == 1, err
    command = ["rlx2", *argv[:1 + (argv[:1] == ["suite"])]] if argv[:1] != ["frob"] else ["rlx2"]
    assert err[0].startswith(" ".join(command) + ": "), err[0]
    assert names.replace("{w}", str(work)) in err[0], err[0]
    assert snapshot(work) == before  # nothing written, moved or deleted


def test_a_run_held_by_another_process_is_one_line(template, tmp_path, capsys):
    shutil.copytree(template / "adhoc", tmp_path / "adhoc")
    held = RunDirectory(tmp_path / "adhoc/td3/Hopper-v5/rlx2/seed-0")
    held.lock()  # another open file description: flock conflicts as with another process
    try:
        code = main(["run", "--out", str(tmp_path / "adhoc"), "--steps", "900", "--warmup-steps", "500",
                     "--eval-every", "300", "--eval-episodes", "1", "--hidden-sizes", "16", "--quiet"])
    finally:
        held.unlock()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0] == f"rlx2 run: {held.path} is being run by another process (wait for it, or use another --out)"
    assert sorted(p.name for p in held.path.iterdir()) == [".lock"]


def test_a_full_disk_while_writing_a_report_is_one_line_and_leaves_the_old_report(template, tmp_path, monkeypatch,
                                                                                capsys):
    import errno

    from rlx2 import report

    out = tmp_path / "report"
    args = ["report", str(FIXTURE / "suite.toml"), "--results", str(template / "records"), "--out", str(out),
            "--reps", "50"]
    assert main(args) == 0
    before = snapshot(out)
    capsys.readouterr()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".report.x" / "table_paper.md"))

    monkeypatch.setattr(report, "write_table", full)
    assert main([*args, "--force"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rlx2 report: {tmp_path / '.report.x' / 'table_paper.md'}: No space left on device"]
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report"]

    def full_unnamed(*a, **k):  # as matplotlib's PDF writer raises it: no file named
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_table", full_unnamed)
    assert main([*args, "--force"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"rlx2 report: {out}: No space left on device"]
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["report"]
