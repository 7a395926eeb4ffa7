"""Encrypted inference on published models (docs/MODELS.md, "Encrypted inference"): listings of
DP-trained linear models (``ModelListing``) and a client's encrypted predictions on them
(``Prediction``), computed on the ``he`` queue. services.py writes, selectors.py reads, storage.py keeps
the ciphertexts in the private storage root; the crypto is compute/engines/he/inference.py and the
format cloakroom_client/protocol/inference.py."""
