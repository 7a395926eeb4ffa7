"""Ensembles: the PATE listings of several owners' DP datasets that share one feature schema and one
categorical label (docs/PATE.md). Writes in services.py, reads in selectors.py, the API in api.py; the
PATE job itself is compute's (compute/kinds/pate.py)."""
