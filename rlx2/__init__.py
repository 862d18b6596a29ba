"""rlx2: train sparse deep-RL agents from scratch (RLx2) and compare them with baselines.

The package is layered (data flows down): ``cli`` -> ``train`` (one run) -> ``agents``,
``replay``, ``sparse`` and the method registry in ``methods``. For notebooks:
``rlx2.load_agent(run_dir)`` gives a finished run's trained agent
(``agent.deterministic_action(obs)``, its settings in ``agent.cfg``); ``rlx2.load_policy(file)``
an actor exported by ``rlx2 export``. Importing the package imports nothing heavy (no torch), so
``rlx2.deploy`` stays usable where torch is not installed.
"""

__version__ = "0.1.0"


def load_agent(run_dir):
    """The trained agent of a finished run directory (see ``rlx2.evaluation.load_agent``)."""
    from rlx2.evaluation import load_agent as load

    return load(run_dir)


def load_policy(path, compute="auto", threads=1):
    """An actor exported by ``rlx2 export`` (.npz or .onnx), without torch (see ``rlx2.deploy.load_policy``)."""
    from rlx2.deploy import load_policy as load

    return load(path, compute, threads)
