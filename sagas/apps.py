from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the saga's own event type, so the event store knows it everywhere.
        from sagas import webhooks  # noqa: F401
