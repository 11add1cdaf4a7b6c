"""Token authentication for the API: django-rest-knox's, with one query per request.

Clients send ``Authorization: Token <token>``. The database holds only a digest of each token
(knox), and a token past its expiry is refused with 401 and deleted.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.models import AuthToken


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token check, without sweeping the user's other tokens on every request."""

    def _cleanup_token(self, auth_token: AuthToken) -> bool:
        # Knox also loads and deletes the user's *other* expired tokens here: one more query on
        # every authenticated request. An expired token is refused on its own expiry all the
        # same; `revoke_api_tokens --expired` removes the rest.
        if auth_token.expiry is not None and auth_token.expiry < timezone.now():
            auth_token.delete()
            return True
        return False


class TokenScheme(OpenApiAuthenticationExtension):
    """Describe the token in the schema as before knox: ``tokenAuth``, ``Token <token>``."""

    target_class = "infrastructure.api.authentication.TokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        definition: dict[str, Any] = build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Token",  # noqa: S106 (the header keyword, not a secret)
        )
        return definition
