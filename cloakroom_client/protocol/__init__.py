"""What the client and the server must agree on, defined once and imported by both.

* :mod:`~cloakroom_client.protocol.bundle`: the HE bundle format (file names, limits, parameter
  sets) and the manifest's rules;
* :mod:`~cloakroom_client.protocol.noise`: the grid every noisy measurement is released on and the
  exact discrete samplers that put it there;
* :mod:`~cloakroom_client.protocol.he_plan`: how a query over an encrypted bundle becomes encrypted
  aggregates and noisy components. The server plans a job with it;
* :mod:`~cloakroom_client.protocol.release_spec`: the key holder's check of the release spec the
  server sends for a job: it plans the same job again from its own copy of the manifest and refuses
  a spec that differs;
* :mod:`~cloakroom_client.protocol.release`: the key holder's release of a checked job (decrypt with
  :mod:`~cloakroom_client.protocol.ckks`, combine, noise), run by the owner's key agent and the
  platform's escrow worker alike;
* :mod:`~cloakroom_client.protocol.escrow`: the sealed box that escrows an owner's secret key to the
  platform's escrow worker;
* :mod:`~cloakroom_client.protocol.errors`: the errors all of them raise.

The server may import this package; this package imports nothing of the server and nothing of the
rest of ``cloakroom_client``: only the standard library, numpy and cryptography, and TenSEAL lazily
inside the functions that decrypt (``pip install cloakroom-client`` without the ``he`` extra still
imports it, and the server's web process never loads TenSEAL through it).
"""
