"""HE datasets: bundles of CKKS ciphertexts made on the owner's machine, and their escrowed keys.

The layers, each its own module:

- the format (file names, limits, parameter sets, manifest rules) is shared with the owner's client:
  ``cloakroom_client/protocol/bundle.py``;
- :mod:`marketplace.he.checker`: the child process that reads the untrusted TenSEAL bytes, and
  :mod:`marketplace.he.sandbox`, which runs it with limits;
- :mod:`marketplace.he.storage`: the bundle folder, the sealed key, files streamed in and hash-checked;
- :mod:`marketplace.he.services` (writes) and :mod:`marketplace.he.selectors` (reads);
- :mod:`marketplace.he.serializers` and :mod:`marketplace.he.api`: the HTTP API.

This package exports the storage names compute uses to find a dataset's files. It imports nothing that
needs Django's app registry, because the checker child (``python -m marketplace.he.checker``) imports it
without settings.
"""

from marketplace.he.storage import ESCROW_FILE, bundle_folder, escrow_path

__all__ = ["ESCROW_FILE", "bundle_folder", "escrow_path"]
