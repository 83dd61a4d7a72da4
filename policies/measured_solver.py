"""`--method rl --reward measured` as a registered solver (`rl-measured`): the ILP plan, then the
agent fine-tuned on the real model's end metric (`policies.measured`)."""
from __future__ import annotations

from dse.solvers import ilp
from dse.solvers.result import SolveResult
from policies.measured import finetune


def solve(problem, episodes: int = 192, texts: int = 32, holdout: int = 96, policy=None, layers=None,
          weights=None, model=None, seed: int = 0) -> SolveResult:
    """`--method rl --reward measured`: the ILP plan, then the agent fine-tuned on the real model's
    end metric (policies.measured). :param model: the model as the user named it (its weights are loaded)."""
    exact = ilp.solve(problem)
    if not exact.success:
        return exact
    result = finetune(problem, exact.assignment, model, policy=policy, layers=layers, weights=weights, seed=seed,
                      episodes=episodes, texts=texts, holdout=holdout)
    broken = problem.violations(result.assignment)
    if broken:  # a solver bug, not bad input
        raise AssertionError(f"rl returned an over-budget plan: {broken}")
    return result
