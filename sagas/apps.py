from django.apps import AppConfig


class SagasConfig(AppConfig):
    name = "sagas"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The saga's own event type, so the event store knows it everywhere; the check that
        # stops a deploy dropping a definition version unfinished sagas still use.
        from sagas import checks, webhooks  # noqa: F401
