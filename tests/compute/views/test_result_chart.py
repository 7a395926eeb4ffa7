"""The released answer's chart on the job page labels each interval's ends with the interval's own
numbers, the same strings as the table beside it (and draws no axis ticks that could pass for them)."""

from __future__ import annotations

import re

import pytest

from compute.models import Job
from tests.compute.views.test_pages import find_all, logged_in, submit

pytestmark = pytest.mark.django_db


def texts(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<text [^>]*class="[^"]*\b{css_class}\b[^"]*"[^>]*>([^<]*)</text>', html)


def test_the_whisker_ends_carry_the_intervals_numbers_as_the_table_prints_them(
    buyer, dp_dataset, purchase, eager_tasks, django_capture_on_commit_callbacks
):
    client = logged_in(buyer)
    with django_capture_on_commit_callbacks(execute=True):
        response = submit(client, dp_dataset, purchase, aggregate="sum", column="age", group_by="region")
    page = client.get(response["Location"]).content.decode()
    job = Job.objects.get()

    svg = find_all(page, lambda tag, attrs: tag == "svg")[0]
    table = find_all(page, lambda tag, attrs: tag == "table" and attrs.get("class") == "result-table")[0]
    cells = [
        re.findall(r'<td class="num">([^<]*)</td>', row) for row in re.findall(r"<tr><th scope=\"row\">.*?</tr>", table)
    ]
    assert len(cells) == len(job.result["groups"]) == 3
    assert texts(svg, "chart-low") == [low for low, _ in cells]
    assert texts(svg, "chart-high") == [high for _, high in cells]
    assert "chart-axis" not in svg
