"""Tables the test participants write to, so tests can count effects and calls."""

from __future__ import annotations

from django.db import models


class Effect(models.Model):
    """Record a participant's effect once per idempotency key (the unique key makes it so)."""

    key = models.CharField(max_length=255, unique=True)
    saga_id = models.UUIDField(db_index=True)
    step = models.CharField(max_length=100)
    phase = models.CharField(max_length=16)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class Call(models.Model):
    """Record every call of a participant, with the attempt and the process that made it."""

    saga_id = models.UUIDField(db_index=True)
    step = models.CharField(max_length=100)
    phase = models.CharField(max_length=16)
    attempt = models.PositiveIntegerField()
    pid = models.IntegerField()
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.step} {self.phase} #{self.attempt} in {self.pid}"
