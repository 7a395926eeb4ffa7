"""``python -m cloakroom_client.cli``: the ``cloakroom`` command."""

import sys

from cloakroom_client.cli.main import main

sys.exit(main())
