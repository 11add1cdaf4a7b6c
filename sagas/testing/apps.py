from django.apps import AppConfig


class SagasTestingConfig(AppConfig):
    name = "sagas.testing"
    label = "sagas_testing"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Saga engine test fixtures"

    def ready(self) -> None:
        from sagas.testing import duplication

        duplication.connect()
