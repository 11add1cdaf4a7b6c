from django.apps import AppConfig


class BackofficeConfig(AppConfig):
    name = "backoffice"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from backoffice.api_tokens import register_admin
        from backoffice.invariants import discover

        discover()
        # After the admin's autodiscovery (django.contrib.admin comes first in INSTALLED_APPS),
        # so knox's own token page is there to be replaced.
        register_admin()
