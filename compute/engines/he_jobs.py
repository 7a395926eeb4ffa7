"""The old path of the server's HE plan, which is now :mod:`compute.engines.he.plan`.

Kept only so that compute/he_services.py and bench/he_jobs.py, which other branches of issue 12
rewrite, keep importing ``compute.engines.he_jobs`` until their import lines move to
``from compute.engines.he import plan as server_plan``; delete this module then.
"""

from compute.engines.he.plan import (
    AGGREGATES,
    MAX_REGRESSION_COLUMNS,
    Aggregate,
    Component,
    HeColumn,
    Plan,
    manifest_columns,
    plan,
)

__all__ = [
    "AGGREGATES",
    "MAX_REGRESSION_COLUMNS",
    "Aggregate",
    "Component",
    "HeColumn",
    "Plan",
    "manifest_columns",
    "plan",
]
