"""How a query over an encrypted bundle is computed and noised: one planner for server and key holder.

:func:`plan` turns a query, the bundle's manifest and the job's epsilon into

* the encrypted **aggregates** the server's workers compute: slot-wise sums over the chunks of
  products of one to three columns, or of a column times the buyer's public weights; the key holder
  decrypts each and adds its first ``min(rows, slots)`` slots;
* the noisy **components** the key holder releases: ``offset + sum(coef * aggregate)`` rounded to
  its grid and noised (:mod:`cloakroom_client.protocol.noise`), with sensitivities computed here
  from the declared bounds, the filter and the weights.

The server plans every job with this function and sends the key holder a *release spec* built from
the plan; the owner's key agent and the escrow worker plan the job again from its query and epsilon
and their own copy of the manifest (:func:`cloakroom_client.protocol.release_spec.verify_release_spec`),
and release only a spec identical to their own plan. So the two sides cannot drift, and a server
that lowers a sensitivity, a scale or a length, adds a component or asks for more epsilon than the
job paid for is refused before anything is decrypted.

Neighbouring relation (HE mode): one row **replaced in place**. Rows are positional in the
ciphertexts, and a dot product's weights are indexed by row position, so removing a row would move
every later row under another weight; replacing one keeps every other row where it was. A sum over
rows of a per-row term whose declared range is ``[lo, hi]`` then changes by at most ``hi - lo``:

* sum of a column in [lower, upper]: ``upper - lower`` (with a filter: ``max(upper, 0) - min(lower, 0)``);
* dot product with weights ``|w| <= W``: ``W * (upper - lower)``;
* one count (an indicator or boolean column, filtered or not): 1; the counts of all the categories
  of a column together: 2 in L1 (the row leaves one category and joins another), one epsilon for all;
* mean and variance: a noisy count (sensitivity 1; an unfiltered count does not change under this
  relation but is noised all the same so that the row count is not published), a noisy centred sum
  ``sum(x - mid)`` (``upper - lower``) and a noisy centred sum of squares (``radius**2``);
* regression statistics: each sum of a product by the range of that product.

The package is split by what a reader looks for: :mod:`.columns` (the query's columns, filter and
weights checked against the manifest), :mod:`.model` (aggregates, components, the plan) and
:mod:`.planner` (one planning function per aggregate). Its public names are exported here.

Pure Python and numpy: no Django, no TenSEAL.
"""

from cloakroom_client.protocol.he_plan.columns import HeColumn, manifest_columns, product_range
from cloakroom_client.protocol.he_plan.model import Aggregate, Component, Plan, key_component
from cloakroom_client.protocol.he_plan.planner import (
    AGGREGATES,
    MAX_REGRESSION_COLUMNS,
    NEIGHBOURING,
    UNLIMITED_WEIGHTS,
    plan,
)

__all__ = [
    "AGGREGATES",
    "MAX_REGRESSION_COLUMNS",
    "NEIGHBOURING",
    "UNLIMITED_WEIGHTS",
    "Aggregate",
    "Component",
    "HeColumn",
    "Plan",
    "key_component",
    "manifest_columns",
    "plan",
    "product_range",
]
