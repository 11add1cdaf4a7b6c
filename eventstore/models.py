"""The event store's tables: events (append-only), snapshots, projection checkpoints.

Events are written only by ``PostgresEventStore.append`` (one SQL statement per batch);
the models exist for migrations, the admin browser and ad-hoc queries. A trigger refuses
UPDATE and DELETE on the events table whatever the client (see migration 0002).
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.fields.json import KeyTextTransform


class StoredEvent(models.Model):
    """One event in one stream, at one version, at one place in the global log."""

    # The global position: a sequence, so it orders events by when they were inserted,
    # not when they committed (readers use ``transaction_id`` for that).
    position = models.BigAutoField(primary_key=True)
    # pg_current_xact_id() of the writing transaction, set by a column default.
    transaction_id = models.BigIntegerField(editable=False)
    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    stream_type = models.CharField(max_length=100)
    stream_id = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    event_type = models.CharField(max_length=200)
    schema_version = models.PositiveSmallIntegerField(default=1)
    data = models.JSONField()
    metadata = models.JSONField(default=dict)
    recorded_at = models.DateTimeField(editable=False)

    class Meta:
        db_table = "eventstore_event"
        verbose_name = "event"
        ordering = ["position"]
        constraints = [
            # The optimistic-concurrency check: two writers cannot both add version N.
            models.UniqueConstraint(
                fields=["stream_type", "stream_id", "version"], name="eventstore_stream_version"
            ),
            models.CheckConstraint(
                condition=models.Q(version__gte=1), name="eventstore_version_positive"
            ),
        ]
        indexes = [
            # Global-log readers walk (transaction_id, position).
            models.Index(fields=["transaction_id", "position"], name="eventstore_log_order"),
            models.Index(fields=["event_type", "position"], name="eventstore_type_position"),
            models.Index(
                KeyTextTransform("correlation_id", "metadata"), name="eventstore_correlation"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream_type}/{self.stream_id} v{self.version} {self.event_type}"


class Snapshot(models.Model):
    """An aggregate's state at a version, so loading need not replay the whole stream."""

    stream_type = models.CharField(max_length=100)
    stream_id = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    schema_version = models.PositiveSmallIntegerField()
    state = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "eventstore_snapshot"
        constraints = [
            models.UniqueConstraint(
                fields=["stream_type", "stream_id", "schema_version", "version"],
                name="eventstore_snapshot_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"snapshot {self.stream_type}/{self.stream_id} v{self.version}"


class ProjectionCheckpoint(models.Model):
    """How far a projection has read the global log.

    Updated in the same transaction as the projection's read-model writes, so the read
    model and its checkpoint never disagree.
    """

    name = models.CharField(max_length=100, primary_key=True)
    transaction_id = models.BigIntegerField(default=0)
    position = models.BigIntegerField(default=0)
    events_processed = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "eventstore_projection_checkpoint"

    def __str__(self) -> str:
        return f"{self.name} at ({self.transaction_id}, {self.position})"
