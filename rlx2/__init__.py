"""rlx2: train sparse deep-RL agents from scratch (RLx2) and compare them with baselines.

The package is layered (data flows down): ``cli`` -> ``train`` (one run) -> ``agents``,
``replay``, ``sparse`` and the method registry in ``methods``. For notebooks:
``rlx2.load_agent(run_dir)`` gives a finished run's trained agent
(``agent.deterministic_action(obs)``, its settings in ``agent.cfg``).
"""

__version__ = "0.1.0"


def load_agent(run_dir):
    """The trained agent of a finished run directory (see ``rlx2.evaluation.load_agent``)."""
    from rlx2.evaluation import load_agent as load

    return load(run_dir)
