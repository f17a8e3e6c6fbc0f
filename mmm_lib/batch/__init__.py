"""Many runs at once: ``mmm batch MANIFEST.yaml`` fans runs (a list, a spec grid, a split by brand or market)
out on Dask, each the same six-stage pipeline as ``mmm run``, and writes ``outputs/batches/<name>/``.

:mod:`.manifest` expands and validates the runs; :mod:`.execute` runs them (embedded LocalCluster or an
existing scheduler); :mod:`.report` writes ``batch.json`` and ``index.html``.
"""

from .execute import BatchError, execute_batch, open_client
from .manifest import BatchPlan, ManifestError, PlannedRun, batch_dir, plan_batch
from .report import batch_status

__all__ = ["BatchError", "BatchPlan", "ManifestError", "PlannedRun", "batch_dir", "batch_status", "execute_batch",
           "open_client", "plan_batch"]
