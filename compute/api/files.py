"""The base of the API's downloads: a result, a model file, a ciphertext, the fake table."""

from __future__ import annotations

from rest_framework.views import APIView


class FileApi(APIView):
    """A download: the body is the file (its format is in the path or in ``?format=``), whatever the
    Accept header says; errors are JSON in the one error shape."""

    def perform_content_negotiation(self, request, force=False):
        return super().perform_content_negotiation(request, force=True)
