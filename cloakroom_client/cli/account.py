"""``cloakroom login`` and ``cloakroom logout``: one saved API key per server and user.

``login`` asks for the password once, creates a key (or reuses the one already saved for that user,
while the server still accepts it) and saves it with :mod:`cloakroom_client.credentials`; every later
command on that server uses it when no ``--api-key`` (or ``CLOAKROOM_API_KEY``) is given. ``logout``
revokes the saved key on the server and removes it from the file.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any

from cloakroom_client.client import Client, CloakroomError
from cloakroom_client.credentials import credentials_path, forget_key

COMMANDS = ("login", "logout")
PASSWORD_ENV = "CLOAKROOM_PASSWORD"


def add_commands(sub: Any) -> None:
    """Add ``login`` and ``logout`` to ``sub``, the subparsers of the ``cloakroom`` parser."""
    p = sub.add_parser(
        "login",
        help="save an API key for this server, so later commands need no --api-key",
        description="Create an API key with your user name and password, or reuse the one saved for you, and "
        "save it (mode 0600) in $CLOAKROOM_CREDENTIALS or ~/.cloakroom/credentials.json. The password is "
        f"read from ${PASSWORD_ENV}, from stdin with --password-stdin, or asked for.",
    )
    p.add_argument("--username", "-u", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    p.add_argument("--name", default="cli", help="the new key's name, shown in the account's key list (default cli)")
    sub.add_parser("logout", help="revoke the saved API key of this server and forget it")


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV) or getpass.getpass(f"password for {args.username}: ")


def _logout(client: Client) -> int:
    entry = forget_key(client.url)
    if entry is None:
        print(f"no key saved for {client.url}", file=sys.stderr)
        return 0
    if entry.get("id") is not None:
        try:
            Client(client.url, entry["key"]).revoke_api_key(entry["id"])
        except CloakroomError as exc:
            if exc.status not in (401, 403, 404):  # already revoked or gone: forgetting it is all there is to do
                raise
    print(f"logged out {entry['username']} from {client.url}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, client: Client) -> int:
    """Run ``login`` or ``logout``; the SDK's errors are the caller's to print."""
    if args.command == "logout":
        return _logout(client)
    logged_in = Client.login(client.url, username=args.username, password=_password(args), name=args.name)
    me = logged_in.me()
    print(f"logged in as {me['username']} on {client.url}; key saved in {credentials_path()} (mode 0600)")
    return 0
