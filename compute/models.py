from django.db import models


class WorkerHeartbeat(models.Model):
    """A token a worker has processed: proof, for health checks, that the broker and a worker work."""

    token = models.CharField(max_length=64, unique=True)
    seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.token} at {self.seen_at:%Y-%m-%d %H:%M:%S}"
