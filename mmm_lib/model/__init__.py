"""The marketing mix model, defined once: transforms, prior registry and the model object.

``from mmm_lib.model import from_artifacts`` gives the :class:`MMM` of a run; its ``build()`` is the
PyMC graph the fit stage samples, and its numpy methods (``media``, ``mu``, ``expected_sales``,
``response``) evaluate the same definition on posterior draws for contributions, ROI and curves.
Importing this package does not import PyMC.
"""

from .mmm import LIKELIHOOD, MMM, ModelData, from_artifacts, model_data, parameter_count, posterior_draws
from .priors import Prior, PriorError

__all__ = ["LIKELIHOOD", "MMM", "ModelData", "Prior", "PriorError", "from_artifacts", "model_data", "parameter_count", "posterior_draws"]
