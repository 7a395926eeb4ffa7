"""Signals the marketplace sends when something happens that another app acts on.

The marketplace never imports compute (compute builds on the marketplace), so where a marketplace
write must set compute's work going, it sends a signal and compute connects the receiver.
"""

from __future__ import annotations

from django.dispatch import Signal

#: Sent by :func:`marketplace.he.services.escrow_store` once the transaction that escrowed an HE
#: dataset's secret key has committed, with ``sender=Dataset`` and ``dataset`` (the dataset, its
#: ``key_custody`` now "escrow"). Compute connects the receiver (in ``compute/apps.py``): it hands the
#: dataset's jobs already waiting for the key to the escrow worker. Sent on commit, so a receiver that
#: queues tasks never queues them for a key that a rolled-back transaction did not keep.
key_escrowed = Signal()
