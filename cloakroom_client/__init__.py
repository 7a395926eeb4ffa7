"""Cloakroom's Python SDK and command-line client.

It speaks the public REST API only and knows nothing of the server's internals, so it doubles as
the API's first real client::

    from cloakroom_client import Client

    client = Client("http://127.0.0.1:8000", api_key="ck_...")
    datasets = client.datasets(search="diabetes")
    purchase = client.buy(datasets[0]["id"], epsilon="1.0")
"""

from cloakroom_client.client import Client, CloakroomError

__all__ = ["Client", "CloakroomError"]
__version__ = "0.1.0"
