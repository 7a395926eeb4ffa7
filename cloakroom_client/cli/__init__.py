"""The ``cloakroom`` command: the SDK from a terminal.

One module per command group: :mod:`.catalogue` (account, datasets, purchases), :mod:`.bundles`
(``cloakroom he``: encrypt, publish, escrow) and :mod:`.key_agent` (``cloakroom key-agent``);
:mod:`.main` builds the parser and dispatches. The console entry point is
``cloakroom_client.cli:main``, and ``python -m cloakroom_client.cli`` runs it too.
"""

from cloakroom_client.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
