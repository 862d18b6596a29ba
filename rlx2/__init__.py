"""rlx2: train sparse deep-RL agents from scratch (RLx2) and compare them with baselines.

The package is layered (data flows down): ``cli`` -> ``train`` (one run) -> ``agents``,
``replay``, ``sparse`` and the method registry in ``methods``.
"""

__version__ = "0.1.0"
