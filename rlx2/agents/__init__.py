"""TD3 and SAC agents (spec section 2 and 7) whose networks may be sparse."""

from rlx2.agents.base import Agent
from rlx2.agents.sac import SAC
from rlx2.agents.td3 import TD3
from rlx2.sparse.layers import set_backend

AGENTS: dict[str, type[Agent]] = {"td3": TD3, "sac": SAC}


def make_agent(algo: str, **kwargs) -> Agent:
    """Build the agent named ``algo`` (``td3`` or ``sac``), its layers on ``cfg.sparse_backend``."""
    agent = AGENTS[algo](**kwargs)
    for module in agent.modules().values():
        set_backend(module, kwargs["cfg"].sparse_backend)
    return agent


__all__ = ["AGENTS", "Agent", "SAC", "TD3", "make_agent"]
