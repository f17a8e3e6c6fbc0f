"""Budget decisions (stage 07_optimize): response curves over a planning horizon, the optimal split of a
budget under the posterior, target-ROI budgets and scenario forecasts, all from the run's one model object.

* :mod:`.horizon`: the periods after the data and how a spend plan becomes activity there;
* :mod:`.plan`: a plan's incremental sales per posterior draw, and the compiled objective with its gradient;
* :mod:`.allocate`: bounds, feasibility, SLSQP from several starts, target mode;
* :mod:`.recommend`: the recommendation as ``optimization.json`` holds it;
* :mod:`.curves`, :mod:`.scenario`: response curves and forecasts of planned flighting;
* :mod:`.stage`: the stage in one call (notebook 07 and ``mmm optimize``).
"""

from .allocate import InfeasibleBounds
from .recommend import PlanContext, plan_context, recommend
from .scenario import ScenarioError
from .stage import OptimizeResult, compute_optimization, optimize_stage, settings_for

__all__ = ["InfeasibleBounds", "OptimizeResult", "PlanContext", "ScenarioError", "compute_optimization", "optimize_stage",
           "plan_context", "recommend", "settings_for"]  # fmt: skip
