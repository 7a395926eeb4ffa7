"""The README works as written: its curl tour and its Python snippets, read out of README.md's fenced
code blocks (so this test follows the README as it changes), run against a real ``make demo`` on a
fresh folder: gunicorn, the Celery worker, beat and the demo owner's key agent, seeded by seed_demo.

The only changes made to the README's text are the ones a reader makes: the printed passwords for
``PASSWORD``, and this demo's port for 8000. Then what matters is compared: every HTTP status the
tour meets, that its job is released, that the dataset bought is the one the README means (the DP
diabetes table, not its encrypted copy), that the tour's own upload ends up published. The same demo
then starts a second time as ``make demo`` would, and the password hints it prints are run as printed.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from cloakroom_client import models as sdk_models
from tests.integration.live import REPO_ROOT, clean_env, free_port

pytestmark = pytest.mark.integration

README = REPO_ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
# The shared virtual environment is never reinstalled by a test: `make -o STAMP` takes it as it is.
MAKE = ["make", "--no-print-directory", "-o", ".venv/.requirements-installed"]
PASSWORD_LINE = re.compile(r"^\s*(demo-owner|demo-buyer|demo-modeller|admin)\s+.*password: (\S+)\s*$", re.MULTILINE)
MODEL_TOUR = "A model, and predictions on encrypted rows"
HTTP_TIMEOUT = 30
# Each curl call of the tour reports "@@ METHOD STATUS URL" on stderr; its stdout is left as it is.
CURL_SPY = "curl() { command curl -w '%{stderr}@@ %{method} %{http_code} %{url_effective}\\n' \"$@\"; }\n"


@dataclass(frozen=True)
class Block:
    heading: str
    lang: str
    code: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced code block of the README, with the heading it sits under (fences may be indented)."""
    blocks: list[Block] = []
    heading, lang, body = "", None, []
    for line in text.splitlines():
        stripped = line.strip()
        if lang is None and line.startswith("#"):
            heading = line.lstrip("#").strip()
        elif lang is None and stripped.startswith("```"):
            lang, body = stripped[3:].strip(), []
        elif lang is not None and stripped == "```":
            blocks.append(Block(heading=heading, lang=lang, code="\n".join(body) + "\n"))
            lang = None
        elif lang is not None:
            body.append(line)
    return blocks


def curl_tour(text: str) -> list[str]:
    return [b.code for b in readme_blocks(text) if b.heading == "With curl" and b.lang == "sh"]


def python_snippets(text: str) -> list[str]:
    return [b.code for b in readme_blocks(text) if b.lang == "python"]


def section_blocks(text: str, heading: str, lang: str) -> list[str]:
    return [b.code for b in readme_blocks(text) if b.heading == heading and b.lang == lang]


def in_a_checkout(folder: Path) -> None:
    """What the README's commands read from the checkout they are run in: the sample rows."""
    shutil.copytree(REPO_ROOT / "docs" / "examples", folder / "docs" / "examples")


@dataclass
class Demo:
    url: str
    env: dict[str, str]
    var_dir: Path
    log: Path
    passwords: dict[str, str] = field(default_factory=dict)

    def as_reader(self, code: str) -> str:
        """The README's text with what a reader types in: the passwords, and this demo's address."""
        for username, password in self.passwords.items():
            code = code.replace(f"{username}:PASSWORD", f"{username}:{password}")
            code = code.replace(
                f'username="{username}", password="PASSWORD"', f'username="{username}", password="{password}"'
            )
        code = code.replace(README_URL, self.url)
        assert "PASSWORD" not in code and ":8000" not in code, code
        return code

    def key(self, username: str) -> dict[str, str]:
        response = requests.post(
            f"{self.url}/api/v1/api-keys/",
            json={"name": "readme-test"},
            auth=(username, self.passwords[username]),
            timeout=HTTP_TIMEOUT,
        )
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['key']}"}

    def get(self, path: str, headers: dict[str, str]) -> dict:
        response = requests.get(f"{self.url}{path}", headers=headers, timeout=HTTP_TIMEOUT)
        assert response.status_code == 200, response.text
        return response.json()


def make_env(var_dir: Path) -> dict[str, str]:
    env = clean_env(CLOAKROOM_VAR_DIR=str(var_dir))
    for name in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # make test's own make must not steer these
        env.pop(name, None)
    return env


def wait_for(log: Path, text: str, process: subprocess.Popen, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (content := log.read_text(errors="replace")):
        assert process.poll() is None, f"make demo exited early:\n{content}"
        assert time.monotonic() < deadline, f"no {text!r} within {timeout:g}s:\n{content}"
        time.sleep(0.5)
    return content


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    var_dir = tmp_path_factory.mktemp("readme-demo") / "var"
    log = var_dir.parent / "demo.log"
    port = free_port()
    env = make_env(var_dir)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*MAKE, "demo", f"PORT={port}"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        content = wait_for(log, "is ready", process, timeout=400)
        passwords = dict(PASSWORD_LINE.findall(content))
        assert set(passwords) == {"demo-owner", "demo-buyer", "demo-modeller", "admin"}, content
        yield Demo(url=f"http://127.0.0.1:{port}", env=env, var_dir=var_dir, log=log, passwords=passwords)
    finally:
        stop(process)
        print(log.read_text(errors="replace"))


def test_the_readme_has_a_curl_tour_and_python_snippets_to_run():
    text = README.read_text()
    tour = curl_tour(text)
    assert len(tour) >= 8 and all("curl" in block for block in tour)
    assert any("client.buy(" in snippet for snippet in python_snippets(text))


def run_section_as_buyer(demo, text: str, heading: str, buyer: dict, folder: Path) -> subprocess.CompletedProcess:
    """Run a README section's ``sh`` blocks as written, as demo-buyer, in a checkout copied to ``folder``
    (curl spied on, ``cloakroom`` from this checkout); it must exit 0."""
    in_a_checkout(folder)
    command = f'cloakroom() {{ {shlex.quote(sys.executable)} -m cloakroom_client.cli "$@"; }}\n'
    script = command + CURL_SPY + "".join(demo.as_reader(block) for block in section_blocks(text, heading, "sh"))
    env = {
        **demo.env,
        "PYTHONPATH": str(REPO_ROOT),
        "KEY": buyer["Authorization"].removeprefix("Bearer "),
        "CLOAKROOM_URL": demo.url,
        "CLOAKROOM_PASSWORD": demo.passwords["demo-buyer"],
        "CLOAKROOM_CREDENTIALS": str(folder / "credentials.json"),
    }
    result = subprocess.run(["bash", "-c", script], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result


def spied_calls(stderr: str) -> list[tuple[str, str, int]]:
    """The tour's HTTP calls in order as (method, path with ids as {id}, status); the calls that only
    wait for the job (the same GET again and again) count once."""
    calls: list[tuple[str, str, int]] = []
    for method, status, url in re.findall(r"^@@ (\S+) (\d{3}) (\S+)$", stderr, re.MULTILINE):
        path = re.sub(r"/\d+/", "/{id}/", url.split("://", 1)[1].split("/", 1)[1])
        call = (method, "/" + path, int(status))
        if not (calls and calls[-1] == call and call[1] == "/api/v1/jobs/{id}/"):
            calls.append(call)
    return calls


def test_the_curl_tour_runs_as_written(demo, tmp_path):
    script = CURL_SPY + "".join(demo.as_reader(block) for block in curl_tour(README.read_text()))
    result = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=demo.env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr

    assert spied_calls(result.stderr) == [
        ("POST", "/api/v1/api-keys/", 201),
        ("GET", "/api/v1/me/", 200),
        ("GET", "/api/v1/datasets/?search=diabetes&mode=dp", 200),
        ("GET", "/api/v1/datasets/?search=diabetes&mode=dp", 200),
        ("POST", "/api/v1/purchases/", 201),
        ("GET", "/api/v1/purchases/", 200),
        ("POST", "/api/v1/purchases/", 409),  # more than is left
        ("GET", "/api/v1/purchases/", 200),
        ("POST", "/api/v1/jobs/estimate/", 200),
        ("POST", "/api/v1/jobs/", 202),
        ("GET", "/api/v1/jobs/{id}/", 200),
        ("POST", "/api/v1/api-keys/", 201),
        ("POST", "/api/v1/datasets/", 201),
        ("POST", "/api/v1/datasets/{id}/publish/", 200),
        ("POST", "/api/v1/datasets/{id}/publish/", 409),  # published already
        ("POST", "/api/v1/datasets/", 400),  # the file does not fit its schema
    ], result.stderr

    buyer = demo.key("demo-buyer")
    diabetes = demo.get("/api/v1/datasets/?search=diabetes&mode=dp", buyer)["results"]
    assert [d["title"] for d in diabetes] == ["Diabetes progression"]
    purchase = demo.get("/api/v1/purchases/", buyer)["results"][0]
    assert (purchase["dataset"], purchase["epsilon"]) == (diabetes[0]["id"], "1.500000")
    job = demo.get("/api/v1/jobs/", buyer)["results"][0]
    assert job["status"] == "released" and job["purchase"] == purchase["id"], job
    assert [g["key"] for g in job["result"]["groups"]] == [{"sex": "1"}, {"sex": "2"}]

    owner = demo.key("demo-owner")
    mine = {d["title"]: d for d in demo.get("/api/v1/datasets/?mine=true", owner)["results"]}
    assert mine["Clinic visits"]["status"] == "published"
    assert "Bad bounds" not in mine
    assert (tmp_path / "visits.json").is_file()


def test_the_python_snippets_run_as_written(demo, tmp_path):
    code = "".join(demo.as_reader(snippet) for snippet in python_snippets(README.read_text()))
    in_a_checkout(tmp_path)
    buyer = demo.key("demo-buyer")
    before = {p["id"] for p in demo.get("/api/v1/purchases/", buyer)["results"]}
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**demo.env, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "ci95_low" in result.stdout and "ci95_high" in result.stdout, result.stdout
    # The model snippet: demo-modeller's estimator, then demo-buyer's ten predictions on encrypted rows.
    assert "['malignant' 'benign']" in result.stdout and "probability_benign prediction" in result.stdout

    datasets = {d["title"]: d for d in demo.get("/api/v1/datasets/", buyer)["results"]}
    dp = datasets["Diabetes progression"]
    he = datasets["Diabetes progression (encrypted on the owner's machine)"]
    bought = [p for p in demo.get("/api/v1/purchases/", buyer)["results"] if p["id"] not in before]
    # Newest first: the HE snippet's purchase, then the DP snippet's, the one the README means.
    assert [(p["dataset"], p["epsilon"]) for p in bought] == [(he["id"], "2.000000"), (dp["id"], "1.000000")]
    # The HE job is the snippet's own; the DP job may be the curl tour's, answered again for free (the
    # same query at the same epsilon by the same buyer), so it is looked up by dataset.
    jobs = demo.get("/api/v1/jobs/", buyer)["results"]
    he_job = next(j for j in jobs if j["purchase"] == bought[0]["id"])
    dp_job = next(j for j in jobs if j["dataset"] == dp["id"])
    assert he_job["status"] == "released" and dp_job["status"] == "released", jobs
    assert dp_job["query"]["group_by"] == ["sex"] and he_job["query"]["column"] == "bmi"


def test_the_model_tour_predicts_with_the_seeded_model_as_written(demo, tmp_path):
    """The README's model section against the demo: what make demo printed of its model, the catalogue
    call, then `cloakroom login`, `models` and `predict` as a reader types them (the command from the
    checkout, as `python -m cloakroom_client.cli`), on the README's sample rows."""
    text = README.read_text()
    printed = next(b for b in readme_blocks(text) if b.heading == MODEL_TOUR and b.lang == "text").code
    log = demo.log.read_text(errors="replace")
    for line in printed.splitlines():
        assert line in log, (line, log)

    buyer, modeller = demo.key("demo-buyer"), demo.key("demo-modeller")
    credits = {
        who: Decimal(demo.get("/api/v1/me/", key)["credits"]) for who, key in (("buyer", buyer), ("modeller", modeller))
    }
    result = run_section_as_buyer(demo, text, MODEL_TOUR, buyer, tmp_path)
    assert spied_calls(result.stderr)[0] == ("GET", "/api/v1/models/", 200), result.stderr
    assert "demo-modeller  Breast cancer: malignant or benign (DP logistic regression)" in result.stdout
    assert "wrote scores.csv (10 rows)" in result.stderr

    # One row per sample row, with a `prediction` column: the labels of the released model's parameters.
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert list(scores.columns) == ["score_benign", "probability_benign", "prediction"]
    rows = pd.read_csv(tmp_path / "docs" / "examples" / "tumours.csv")
    trained = next(j for j in demo.get("/api/v1/jobs/", modeller)["results"] if j["kind"] == "train")
    doc = demo.get(f"/api/v1/jobs/{trained['id']}/model/", modeller)
    plain = sdk_models.scores(doc, sdk_models.design_matrix(doc, rows))[:, 0]
    assert np.max(np.abs(scores["score_benign"].to_numpy() - plain)) < 1e-3
    assert scores["prediction"].tolist() == ["benign" if s > 0 else "malignant" for s in plain]
    # Ten rows at 0.01 credits, from demo-buyer to demo-modeller.
    after = {
        who: Decimal(demo.get("/api/v1/me/", key)["credits"]) for who, key in (("buyer", buyer), ("modeller", modeller))
    }
    assert after == {"buyer": credits["buyer"] - Decimal("0.10"), "modeller": credits["modeller"] + Decimal("0.10")}


def test_the_pages_link_an_icon_that_the_demo_serves(demo):
    for page in ("/", "/admin/login/"):
        html = requests.get(f"{demo.url}{page}", timeout=HTTP_TIMEOUT).text
        href = re.search(r'<link rel="icon" href="([^"]+)"', html).group(1)
        icon = requests.get(f"{demo.url}{href}", timeout=HTTP_TIMEOUT)
        assert icon.status_code == 200 and icon.headers["Content-Type"].startswith("image/svg+xml"), href


def change_password(command: str, env: dict[str, str], new_password: str) -> subprocess.CompletedProcess:
    """Run ``command`` as a person pastes it, typing the new password twice. No controlling terminal
    (a new session), so changepassword's getpass reads the answers from stdin."""
    return subprocess.run(
        command,
        shell=True,
        cwd=REPO_ROOT,
        env=env,
        input=f"{new_password}\n{new_password}\n",
        capture_output=True,
        text=True,
        timeout=180,
        start_new_session=True,
    )


def test_a_second_start_sets_up_in_one_process_without_scikit_learn_and_its_hint_works(demo):
    manage = [".venv/bin/honcho", "-e", str(demo.var_dir / "demo.env"), "run", sys.executable, "-X", "importtime"]
    second = subprocess.run(
        [*manage, "manage.py", "demo_setup"], cwd=REPO_ROOT, env=demo.env, capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stderr
    assert "Static files unchanged" in second.stdout
    assert "Already there, passwords unchanged" in second.stdout
    assert not re.search(r"\| +sklearn$", second.stderr, re.MULTILINE), "a second start imports scikit-learn"

    lines = second.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "To set a new one for demo-buyer:" in line)
    hint = lines[at + 1].strip()
    result = change_password(hint, demo.env, "a new passphrase for the hint 5521")
    assert result.returncode == 0, f"{hint}\n{result.stdout}\n{result.stderr}"
    assert "Password changed successfully for user 'demo-buyer'" in result.stdout
    demo.passwords["demo-buyer"] = "a new passphrase for the hint 5521"
    demo.key("demo-buyer")


def test_the_readmes_lost_password_command_works_as_written(demo):
    command = re.search(r"Lost them\? `([^`]+)`", README.read_text()).group(1)
    assert command.startswith("make ")
    command = " ".join(MAKE) + command.removeprefix("make")
    result = change_password(command, demo.env, "a new passphrase for the readme 7730")
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert "Password changed successfully for user 'demo-buyer'" in result.stdout
    demo.passwords["demo-buyer"] = "a new passphrase for the readme 7730"
    demo.key("demo-buyer")
