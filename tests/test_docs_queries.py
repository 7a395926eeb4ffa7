"""docs/QUERIES.md, the query language's reference, is true and complete.

Every fenced ``json`` block of the page is marked by the HTML comment before it: ``<!-- example: dp -->``
or ``<!-- example: he -->`` for a query, ``<!-- returns -->`` for the result of the example above it.
Each example is checked against the OpenAPI ``Query`` component, then submitted through the API on a
dataset with the demo's columns (a DP table, and an HE bundle encrypted by the owner's client) and
released: DP jobs by the worker's code run in-process, HE jobs by the key holder's own code. Each
documented result has the groups (their number and fields) and the fields the real one has. And
every aggregate, filter operator and query field the schema and the engines accept has an example, so
the page keeps in step with them.
"""

from __future__ import annotations

import io
import json
import random
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from drf_spectacular.generators import SchemaGenerator

from cloakroom_client import he as client_he
from cloakroom_client.protocol import he_plan
from compute import services
from compute.engines import dp
from compute.models import Job
from marketplace.services import purchase_create
from tests.compute.kinds.he_query.test_he_jobs_api import key_holder_values
from tests.config.test_openapi_schema import validate
from tests.fixtures.he_jobs import EncryptedTable
from tests.marketplace.he.test_bundle_upload import complete, create, upload

pytestmark = pytest.mark.django_db

DOC = Path(__file__).resolve().parent.parent / "docs" / "QUERIES.md"
BLOCK = re.compile(r"(?:<!--\s*(example: dp|example: he|returns)\s*-->\s*\n)?```json\n(.*?)\n```", re.S)
ROWS = 300
# The demo's diabetes columns that the examples name (marketplace/management/commands/seed_demo.py).
DP_COLUMNS = [
    {"name": "age", "kind": "numeric", "lower": 18, "upper": 100},
    {"name": "sex", "kind": "categorical", "categories": ["1", "2"]},
    {"name": "bmi", "kind": "numeric", "lower": 10, "upper": 60},
    {"name": "bp", "kind": "numeric", "lower": 40, "upper": 180},
    {"name": "glu", "kind": "numeric", "lower": 40, "upper": 250},
    {"name": "progression", "kind": "numeric", "lower": 0, "upper": 400},
]
HE_COLUMNS = [c for c in DP_COLUMNS if c["name"] != "glu"]


def doc_blocks() -> list[tuple[str, object]]:
    """Every json block of the page with its marker ("" when it has none)."""
    return [(marker or "", json.loads(body)) for marker, body in BLOCK.findall(DOC.read_text())]


def examples() -> list[tuple[str, dict, object]]:
    """(mode, query, the documented result or None) for every example, in the page's order."""
    out: list[tuple[str, dict, object]] = []
    for marker, body in doc_blocks():
        if marker == "returns":
            assert out and out[-1][2] is None, "a returns block must follow an example that has none"
            out[-1] = (out[-1][0], out[-1][1], body)
        else:
            out.append((marker.removeprefix("example: "), body, None))
    return out


def frame(columns: list[dict]) -> pd.DataFrame:
    rng = np.random.default_rng(13)
    data = {}
    for c in columns:
        if c["kind"] == "numeric":
            data[c["name"]] = np.round(rng.uniform(c["lower"], c["upper"], ROWS), 1)
        else:
            data[c["name"]] = rng.choice(c["categories"], ROWS)
    return pd.DataFrame(data)


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture(scope="module")
def he_table(tmp_path_factory):
    root = tmp_path_factory.mktemp("docs_queries")
    frame(HE_COLUMNS).to_csv(root / "t.csv", index=False)
    manifest = client_he.encrypt_csv(
        root / "t.csv",
        HE_COLUMNS,
        root / "bundle",
        job_classes=("sum", "product"),
        keystore=root / "keys",
        progress=False,
    )
    return EncryptedTable(root / "bundle", manifest, root / "keys", frame(HE_COLUMNS))


@pytest.fixture
def dp_purchase(owner_client, buyer):
    upload_file = io.BytesIO(frame(DP_COLUMNS).to_csv(index=False).encode())
    upload_file.name = "diabetes.csv"
    meta = {
        "title": "Diabetes progression",
        "epsilon_cap": "100",
        "delta_cap": "0.00001",
        "price_per_epsilon": "1",
        "row_count_public": True,
        "columns": DP_COLUMNS,
    }
    created = owner_client.post(
        "/api/v1/datasets/", {"file": upload_file, "metadata": json.dumps(meta)}, format="multipart"
    )
    assert created.status_code == 201, created.json()
    assert owner_client.post(f"/api/v1/datasets/{created.json()['id']}/publish/").status_code == 200
    return purchase_create(buyer=buyer, dataset_id=created.json()["id"], epsilon=Decimal("50"))


@pytest.fixture
def he_purchase_id(owner_client, buyer_client, he_table):
    created = create(
        owner_client,
        he_table,
        title="Diabetes progression (encrypted)",
        epsilon_cap="100",
        price_per_epsilon="1",
        row_count_public=True,
    )
    assert created.status_code == 201, created.json()
    dataset_id = created.json()["id"]
    upload(owner_client, dataset_id, he_table)
    assert complete(owner_client, dataset_id).status_code == 200
    assert owner_client.post(f"/api/v1/datasets/{dataset_id}/publish/").status_code == 200
    bought = buyer_client.post("/api/v1/purchases/", {"dataset": dataset_id, "epsilon": "50"}, format="json")
    assert bought.status_code == 201, bought.json()
    return bought.json()["id"]


def submitted(buyer_client, purchase_id: int, query: dict, capture) -> dict:
    body = {"purchase": purchase_id, "kind": "query", "query": query, "epsilon": "0.5"}
    with capture(execute=True):
        response = buyer_client.post("/api/v1/jobs/", body, format="json")
    assert response.status_code == 202, (query, response.json())
    return response.json()


def released_dp(buyer_client, purchase, query, capture) -> dict:
    job = submitted(buyer_client, purchase.pk, query, capture)
    services.job_run(job_id=job["id"])
    return buyer_client.get(f"/api/v1/jobs/{job['id']}/").json()


def released_he(owner_client, buyer_client, purchase_id, table, query, capture) -> dict:
    job = submitted(buyer_client, purchase_id, query, capture)
    plans = [p for p in owner_client.get("/api/v1/he/jobs/awaiting/").json()["results"] if p["job"] == job["id"]]
    assert plans, f"{query} is not awaiting the key"
    values = key_holder_values(owner_client, plans[0], table, random.Random(1))
    released = owner_client.post(f"/api/v1/he/jobs/{job['id']}/release/", {"values": values}, format="json")
    assert released.status_code == 200, released.json()
    return buyer_client.get(f"/api/v1/jobs/{job['id']}/").json()


def assert_documented_result_matches(query: dict, documented: object, result: dict) -> None:
    """The documented result has the real one's groups (how many, their keys and fields) and only its fields."""
    assert isinstance(documented, dict), query
    assert set(documented) <= set(result), (query, sorted(set(documented) - set(result)))
    groups, real = documented.get("groups", []), result["groups"]
    assert len(groups) == len(real), (query, groups, real)
    for doc_group, real_group in zip(groups, real):
        assert set(doc_group) == set(real_group), (query, doc_group, real_group)
        assert doc_group["key"] == real_group["key"], (query, doc_group["key"], real_group["key"])


def component(components: dict, node: dict) -> dict:
    """A schema node with its ``$ref`` followed (drf-spectacular names every enum as a component)."""
    while "$ref" in node:
        node = components[node["$ref"].rsplit("/", 1)[1]]
    return node


# ---------------------------------------------------------------------------------------------


def test_every_json_block_is_an_example_or_its_result():
    blocks = doc_blocks()
    assert len(blocks) >= 20
    assert all(marker for marker, _ in blocks), "a json block without <!-- example: dp|he --> or <!-- returns -->"


def test_every_example_is_a_query_the_openapi_schema_accepts(schema):
    for _, query, _ in examples():
        validate(schema, {"$ref": "#/components/schemas/Query"}, query)


def test_every_dp_example_is_accepted_released_and_returns_what_the_page_says(
    buyer_client, dp_purchase, eager_tasks, django_capture_on_commit_callbacks
):
    ran = 0
    for mode, query, documented in examples():
        if mode != "dp":
            continue
        job = released_dp(buyer_client, dp_purchase, query, django_capture_on_commit_callbacks)
        assert job["status"] == Job.Status.RELEASED, (query, job.get("error"))
        if documented is not None:
            assert_documented_result_matches(query, documented, job["result"])
        ran += 1
    assert ran >= 10


def test_every_he_example_is_accepted_released_and_returns_what_the_page_says(
    owner_client, buyer_client, he_purchase_id, he_table, eager_tasks, django_capture_on_commit_callbacks
):
    ran = 0
    for mode, query, documented in examples():
        if mode != "he":
            continue
        job = released_he(
            owner_client, buyer_client, he_purchase_id, he_table, query, django_capture_on_commit_callbacks
        )
        assert job["status"] == Job.Status.RELEASED, (query, job.get("error"))
        if documented is not None:
            assert_documented_result_matches(query, documented, job["result"])
        ran += 1
    assert ran >= 6


def test_every_aggregate_of_each_engine_has_an_example_with_a_documented_result(schema):
    documented = {(mode, q["aggregate"]) for mode, q, result in examples() if result is not None}
    for aggregate in dp.AGGREGATES:
        assert ("dp", aggregate) in documented, f"no DP example of {aggregate} with its result"
    for aggregate in he_plan.AGGREGATES:
        assert ("he", aggregate) in documented, f"no HE example of {aggregate} with its result"
    mapping = schema["components"]["schemas"]["Query"]["discriminator"]["mapping"]
    assert set(mapping) == set(dp.AGGREGATES) | set(he_plan.AGGREGATES)


def test_every_filter_operator_the_schema_accepts_has_an_example(schema):
    components = schema["components"]["schemas"]
    operators = set()
    for ref in components["DpFilter"]["oneOf"]:
        operators |= set(component(components, component(components, ref)["properties"]["op"])["enum"])
    assert operators == {"range", "eq", "in"}
    used = {f["op"] for mode, q, _ in examples() if mode == "dp" for f in q.get("filters") or []}
    assert used == operators
    # A range open at either end, and one closed at both.
    ranges = [f for mode, q, _ in examples() if mode == "dp" for f in q.get("filters") or [] if f["op"] == "range"]
    assert {("low" in f, "high" in f) for f in ranges} >= {(True, False), (False, True), (True, True)}
    # HE's filter in both of its forms: an indicator column, and a source column with a category.
    he_filters = [q["filter"] for mode, q, _ in examples() if mode == "he" and q.get("filter")]
    assert {frozenset(f) for f in he_filters} == {frozenset({"column"}), frozenset({"column", "category"})}


def test_every_field_of_every_query_shape_is_used_by_an_example(schema):
    components = schema["components"]["schemas"]
    missing = {}
    for ref in components["Query"]["oneOf"]:
        shape = component(components, ref)
        aggregates = component(components, shape["properties"]["aggregate"])["enum"]
        fields = {
            name for name, prop in shape["properties"].items() if component(components, prop).get("maxItems") != 0
        }
        used = {key for _, q, _ in examples() if q["aggregate"] in aggregates for key in q}
        if fields - used:
            missing[", ".join(aggregates)] = sorted(fields - used)
    assert not missing, f"fields with no example: {missing}"
    # The two forms of a histogram's bins and of a dot product's weights.
    bins = [q["bins"] for _, q, _ in examples() if q["aggregate"] == "histogram" and "bins" in q]
    assert {type(b) for b in bins} == {int, list}
    weights = [q["weights"] for _, q, _ in examples() if q["aggregate"] == "dot"]
    assert {type(w) for w in weights} == {list, dict}


def test_every_example_is_answered_on_fake_data_with_the_groups_a_job_gives(
    anon, buyer_client, dp_purchase, he_purchase_id
):
    """The page says any of its queries can be tried on the fake table: each one is, signed out."""
    he_dataset = buyer_client.get(f"/api/v1/purchases/{he_purchase_id}/").json()["dataset"]
    datasets = {"dp": dp_purchase.dataset_id, "he": he_dataset}
    tried = 0
    for mode, query, documented in examples():
        response = anon.post(
            f"/api/v1/datasets/{datasets[mode]}/dummy-query/", {"query": query, "epsilon": "0.5"}, format="json"
        )
        assert response.status_code == 200, (query, response.json())
        answer = response.json()
        assert answer["dummy"] is True and answer["mode"] == mode, query
        if documented is not None:
            assert_documented_result_matches(query, documented, answer["result"])
        tried += 1
    assert tried == len(examples())
    assert "## Trying queries on fake data" in DOC.read_text()
