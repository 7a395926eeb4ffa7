"""``GET /api/v1/health/``: is this web process able to reach its database and broker?

Open to anyone (load balancers and container healthchecks have no credentials), so the body says
only "ok" or "unreachable" and when a worker was last seen: never a host name, URL, version or
error text that would tell an outsider how the deployment is built.

The status is 200 while the database and the broker both answer, and 503 when either does not,
with the body saying which. Without a database the web process can serve nothing; without a broker
it still takes job submissions (they are stored, answered 202 and sent by the sweeper once the broker
is back, docs/RELIABILITY.md), but no job runs meanwhile, and monitoring must know.

The broker check is bounded: it gives up after BROKER_TIMEOUT seconds (and the socket timeouts of
the broker settings), whether the broker refuses connections or accepts them and never answers.
"""

from __future__ import annotations

import logging

from django.db import DatabaseError, connection
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from compute import selectors
from config.celery_app import app

logger = logging.getLogger(__name__)

OK = "ok"
UNREACHABLE = "unreachable"

# Seconds the broker check may take; a healthcheck that hangs is worse than one that says no.
BROKER_TIMEOUT = 2.0


def database_status() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # One line, not a traceback: a probe every few seconds during an outage would flood the log.
        logger.warning("health: the database is unreachable: %s", exc)
        return UNREACHABLE
    return OK


def broker_status() -> str:

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT)
    except Exception as exc:  # noqa: BLE001 (each Kombu transport raises its own errors; any means "unreachable")
        logger.warning("health: the broker is unreachable: %s", exc)
        return UNREACHABLE
    return OK


class HealthApi(APIView):
    permission_classes = [AllowAny]
    # No authentication: a stale or wrong Authorization header must not turn a probe into a 401.
    authentication_classes: list = []

    @extend_schema(
        auth=[],
        responses={
            200: inline_serializer(
                "Health",
                {
                    # Plain strings, not two ChoiceFields: drf-spectacular warns (and so does
                    # `check --deploy`) when one choice set gets two enum names.
                    "database": serializers.CharField(help_text='"ok" or "unreachable"'),
                    "broker": serializers.CharField(help_text='"ok" or "unreachable"'),
                    "worker": inline_serializer(
                        "HealthWorker", {"last_seen": serializers.DateTimeField(allow_null=True)}
                    ),
                },
            ),
            503: None,
        },
    )
    def get(self, request: Request) -> Response:
        database = database_status()
        last_seen = None
        if database == OK:
            try:
                last_seen = selectors.worker_last_seen()
            except DatabaseError as exc:
                # The heartbeat table may not exist yet (migrations pending); that is not an outage.
                logger.warning("health: could not read worker heartbeats: %s", exc)
        broker = broker_status()
        body = {
            "database": database,
            "broker": broker,
            "worker": {"last_seen": last_seen.isoformat() if last_seen else None},
        }
        code = status.HTTP_200_OK if database == broker == OK else status.HTTP_503_SERVICE_UNAVAILABLE
        return Response(body, status=code)
