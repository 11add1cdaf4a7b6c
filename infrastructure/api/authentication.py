"""Token authentication for the API: django-rest-knox's tokens, checked in two prepared reads.

Clients send ``Authorization: Token <token>``. The database holds only a digest of each token
(knox), and a token past its expiry is refused with 401 and deleted.

Every API request passes through here, so the check reads the token's row and its user with
two prepared statements (``infrastructure.db``) rather than knox's ORM query, whose compiling
cost more than the rest of the check; this module is the one reader of knox's table.
"""

from __future__ import annotations

import binascii
from hmac import compare_digest
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from rest_framework import exceptions

from infrastructure.db import prepared_select_sent


class TokenAuthentication(KnoxTokenAuthentication):
    """Knox's token check, without sweeping the user's other tokens on every request."""

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        invalid = _("Invalid token.")
        text = token.decode("utf-8")
        try:
            digest = hash_token(text)
        except (TypeError, binascii.Error):
            raise exceptions.AuthenticationFailed(invalid) from None
        # Tokens share their first characters rarely, but may: compare each digest.
        candidates = prepared_select_sent(
            AuthToken, "token_key = %s", [text[: CONSTANTS.TOKEN_KEY_LENGTH]]
        )()
        for auth_token in candidates:
            if not compare_digest(digest, auth_token.digest):
                continue
            if self._cleanup_token(auth_token):
                break
            users = prepared_select_sent(get_user_model(), "id = %s", [auth_token.user_id])()
            if not users:
                break
            auth_token.user = users[0]
            return self.validate_user(auth_token)
        raise exceptions.AuthenticationFailed(invalid)

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
