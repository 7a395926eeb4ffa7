"""Floods against a live gunicorn: password and API-key guessing and job submissions get 429s.

One gunicorn (two worker processes) on this test's PostgreSQL database, counting in Redis under a
key prefix of its own, with the default limits: 10 failed sign-ins per address (and per user name)
in 5 minutes, 20 failed API keys per address in a minute, 60 job submissions per buyer a minute.
Between floods the test deletes its prefix's counters, so each flood starts from nothing.
"""

from __future__ import annotations

import re
import uuid

import pytest
import redis
import requests

from tests.integration.live import ProcessPool, live_database_url, run_manage, site_env, start_web

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
PASSWORD = "correct horse battery 42"
TIMEOUT = 10
LIMITS = {
    "CLOAKROOM_LOGIN_FAILURE_LIMIT": "10",
    "CLOAKROOM_LOGIN_FAILURE_WINDOW": "300",
    "CLOAKROOM_API_KEY_FAILURE_LIMIT": "20",
    "CLOAKROOM_API_KEY_FAILURE_WINDOW": "60",
    "CLOAKROOM_RATE_ANON": "120/min",
    "CLOAKROOM_RATE_USER": "1200/min",
    "CLOAKROOM_RATE_JOB_SUBMIT": "60/min",
}


@pytest.fixture
def site(tmp_path):
    prefix = f"flood-{uuid.uuid4().hex[:8]}"
    env = site_env(
        tmp_path,
        prefix,
        DATABASE_URL=live_database_url(),
        REDIS_URL="redis://127.0.0.1:6379/0",
        CLOAKROOM_CACHE_URL="redis://127.0.0.1:6379/0",
        CLOAKROOM_CACHE_PREFIX=prefix,
        **LIMITS,
    )
    collected = run_manage(["collectstatic", "--noinput"], env)
    assert collected.returncode == 0, collected.stderr
    pool = ProcessPool(log_dir=tmp_path)
    store = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        url = start_web(pool, env)
        requests.post(
            f"{url}/api/v1/auth/signup/",
            json={"username": "flood-buyer", "email": "b@example.org", "password": PASSWORD, "roles": ["buyer"]},
            timeout=TIMEOUT,
        ).raise_for_status()

        def reset() -> None:
            for key in store.scan_iter(f"{prefix}:*"):
                store.delete(key)

        reset()
        yield url, reset
    finally:
        pool.stop_all()
        for key in store.scan_iter(f"{prefix}:*"):
            store.delete(key)
        print(pool.logs())


def _statuses(responses) -> list[int]:
    return [r.status_code for r in responses]


def _assert_locked(response: requests.Response, window: int) -> None:
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= window


def _web_login(session: requests.Session, url: str, path: str, username: str, password: str) -> requests.Response:
    page = session.get(f"{url}{path}", timeout=TIMEOUT)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    data = {"username": username, "password": password, "csrfmiddlewaretoken": token.group(1) if token else ""}
    return session.post(f"{url}{path}", data=data, timeout=TIMEOUT, allow_redirects=False)


def test_fifty_wrong_web_passwords_are_locked_out_after_ten_even_with_the_right_one(site):
    url, _ = site
    session = requests.Session()
    answers = [_web_login(session, url, "/accounts/login/", "flood-buyer", f"wrong-{i}") for i in range(50)]
    assert _statuses(answers[:10]) == [200] * 10  # the form again, "please enter a correct ..."
    assert set(_statuses(answers[10:])) == {429}
    _assert_locked(answers[-1], 300)
    assert "Too many attempts" in answers[-1].text
    # The right password waits out the lockout too: a guesser learns nothing from a late success.
    _assert_locked(_web_login(session, url, "/accounts/login/", "flood-buyer", PASSWORD), 300)


def test_twenty_wrong_admin_passwords_are_locked_out_after_ten(site):
    url, _ = site
    session = requests.Session()
    answers = [_web_login(session, url, "/admin/login/", "admin", f"wrong-{i}") for i in range(20)]
    assert _statuses(answers[:10]) == [200] * 10
    assert set(_statuses(answers[10:])) == {429}
    _assert_locked(answers[-1], 300)


def test_fifty_wrong_basic_passwords_and_two_hundred_bearer_guesses_get_429_in_the_error_shape(site):
    url, reset = site
    basic = [
        requests.post(f"{url}/api/v1/api-keys/", json={"name": "x"}, auth=("flood-buyer", f"no-{i}"), timeout=TIMEOUT)
        for i in range(50)
    ]
    assert _statuses(basic[:10]) == [401] * 10
    assert set(_statuses(basic[10:])) == {429}
    _assert_locked(basic[-1], 300)
    assert basic[-1].json()["error"]["code"] == "throttled"

    reset()
    guesses = [
        requests.get(f"{url}/api/v1/me/", headers={"Authorization": f"Bearer ck_{i:08x}_{'x' * 43}"}, timeout=TIMEOUT)
        for i in range(200)
    ]
    assert _statuses(guesses[:20]) == [401] * 20
    assert set(_statuses(guesses[20:])) == {429}
    _assert_locked(guesses[-1], 60)
    assert guesses[-1].json()["error"]["code"] == "throttled"


def test_a_buyer_submitting_jobs_in_a_loop_is_slowed_to_the_rate(site):
    url, reset = site
    reset()
    key = requests.post(
        f"{url}/api/v1/api-keys/", json={"name": "loop"}, auth=("flood-buyer", PASSWORD), timeout=TIMEOUT
    ).json()["key"]
    headers = {"Authorization": f"Bearer {key}"}
    # Invalid submissions count too: the rate is checked before the body is read.
    answers = [requests.post(f"{url}/api/v1/jobs/", json={}, headers=headers, timeout=TIMEOUT) for _ in range(70)]
    assert _statuses(answers[:60]) == [400] * 60
    assert set(_statuses(answers[60:])) == {429}
    assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
    assert answers[-1].json()["error"]["code"] == "throttled"
    # Reading is not a submission: the buyer can still look at the jobs.
    assert requests.get(f"{url}/api/v1/jobs/", headers=headers, timeout=TIMEOUT).status_code == 200
