"""The form for trying a query on fake data: the DP query form without what spending needs.

It is :class:`compute.forms.dp_query.QueryForm` itself (the same controls, the same job body, the same
errors beside the same controls), less the purchase, the rows guess and the submission token, and with
ids of its own so that it can sit on the dataset page beside the real query form.
"""

from __future__ import annotations

from typing import Any

from compute.engines import dp
from compute.forms.dp_query import QueryForm

AUTO_ID = "dummy_%s"
DEFAULT_EPSILON = "1"


class DummyQueryForm(QueryForm):
    def __init__(self, *args: Any, schema: dict[str, dp.ColumnMeta], **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", AUTO_ID)
        super().__init__(*args, schema=schema, purchases=[], **kwargs)
        for name in ("purchase", "rows", "form_token"):
            del self.fields[name]
        epsilon = self.fields["epsilon"]
        epsilon.label = "Epsilon (ε) of the noise"
        epsilon.initial = DEFAULT_EPSILON
        epsilon.help_text = "The fake answer carries the noise a real job at this epsilon would; nothing is spent."
