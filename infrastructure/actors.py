"""Who did something, as readers are shown it: usernames, never internal user ids.

Events, saga records and operator actions store their actor as ``"user:<id>"`` (ids are
stable; usernames can change). Whoever reads them, client or staff, is shown the username:
an internal id tells them nothing useful and helps whoever enumerates accounts.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib.auth import get_user_model

USER_PREFIX = "user:"
#: Shown for a user id whose account no longer exists.
DELETED_USER = "deleted user"


def usernames_of(actors: Iterable[str]) -> dict[str, str]:
    """Map each ``"user:<id>"`` among ``actors`` to its username, in one query.

    Other actors (a system process, say) are not in the map: callers show them as they are.
    """
    ids = {
        int(a[len(USER_PREFIX) :])
        for a in actors
        if a.startswith(USER_PREFIX) and a[len(USER_PREFIX) :].isdigit()
    }
    if not ids:
        return {}
    names = {f"{USER_PREFIX}{pk}": DELETED_USER for pk in ids}
    users = get_user_model().objects.filter(pk__in=ids).values_list("pk", "username")
    names.update({f"{USER_PREFIX}{pk}": name for pk, name in users})
    return names
