"""What the client and the server must agree on, defined once and imported by both.

* :mod:`~cloakroom_client.protocol.noise`: the grid every noisy measurement is released on and the
  exact discrete samplers that put it there;
* :mod:`~cloakroom_client.protocol.he_plan`: how a query over an encrypted bundle becomes encrypted
  aggregates and noisy components. The server plans a job with it; the owner's key agent plans the
  same job again from its own copy of the manifest and refuses a plan that differs.

The server may import this package; this package imports nothing of the server.
"""
