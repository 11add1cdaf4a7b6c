"""The authorization matrix: every API route and every admin page and action, for every kind of
user, checked against written rules.

The targets are discovered, not listed: API routes from the URL resolver (every route under
/api/ and each HTTP method its view implements), admin pages from the admin registry (each
registered ModelAdmin's changelist, add, change, delete and history pages, its own extra URLs
and its actions) and the admin site's own pages. Each target must have a rule below; a new
route, admin page or action without one fails ``test_every_target_has_a_rule`` until someone
decides who may use it. The expected answers are computed from the rules and the user's
permissions, never copied from what the server answered.

Users: anonymous, an API client (non-staff, with a token, owning the sample order), another
API client, staff without permissions, staff holding each relevant permission alone, staff
holding every view permission, and a superuser.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from eventstore.models import ProjectionCheckpoint
from eventstore.projections import projectors
from orders.models import OrderSummary
from orders.services import customer_erase
from sagas.faults import fault_rule_set
from sagas.models import Saga
from sagas.statuses import FaultMode, Phase
from sagas.tests.harness import drive, failed_compensation_saga
from tests.factories import api_client, make_product, make_user
from webhooks.models import WebhookDelivery
from webhooks.services import endpoint_create

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

# --- Who --------------------------------------------------------------------------------------


@dataclass
class Persona:
    """A kind of user: the user itself (None when anonymous) and what it is called."""

    name: str
    user: User | None
    owns_sample_order: bool = False

    @property
    def anonymous(self) -> bool:
        return self.user is None

    @property
    def staff(self) -> bool:
        return bool(self.user and self.user.is_active and self.user.is_staff)

    def has(self, perm: str) -> bool:
        return bool(self.user and self.user.is_active and self.user.has_perm(perm))


# --- Rules for the API -------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRule:
    """Who may use one method of one API route.

    ``kind``: "public" (anyone), "authenticated" (any signed-in user), "order" (the order's
    owner, or staff holding ``orders.view_ordersummary`` and every permission of ``perms``; others
    get 404 so they cannot learn that the order exists), "staff" (staff holding every
    permission of ``perms``).
    """

    kind: str
    perms: tuple[str, ...] = ()
    body: dict[str, Any] | None = None


ORDER_BODY = {
    "customer_id": "c-matrix",
    "items": [{"sku": "SKU-M", "quantity": 1}],
    "payment_token": "tok_visa",
}

WEBHOOKS = "webhooks.manage_webhooks"
WEBHOOK_URL = "https://hooks.example.com/matrix"
WEBHOOK_BODY = {"url": WEBHOOK_URL, "event_types": ["order.confirmed"]}

API_RULES: dict[tuple[str, str], ApiRule] = {
    ("api:health", "GET"): ApiRule("public"),
    ("api:schema", "GET"): ApiRule("public"),
    ("api:docs", "GET"): ApiRule("public"),
    ("api:product-list", "GET"): ApiRule("authenticated"),
    ("api:order-list", "GET"): ApiRule("authenticated"),
    ("api:order-list", "POST"): ApiRule("authenticated", body=ORDER_BODY),
    ("api:order-detail", "GET"): ApiRule("order"),
    ("api:order-events", "GET"): ApiRule("order"),
    # Cancelling someone else's order takes staff with the cancel permission as well.
    ("api:order-cancel", "POST"): ApiRule("order", ("orders.cancel_order",), body={}),
    ("api:saga-list", "GET"): ApiRule("staff", ("sagas.view_saga",)),
    ("api:saga-detail", "GET"): ApiRule("staff", ("sagas.view_saga",)),
    ("api:saga-retry", "POST"): ApiRule("staff", ("sagas.retry_saga",), body={}),
    ("api:saga-skip", "POST"): ApiRule(
        "staff", ("sagas.skip_compensation",), body={"reason": "matrix"}
    ),
    ("api:webhook-list", "GET"): ApiRule("staff", (WEBHOOKS,)),
    ("api:webhook-list", "POST"): ApiRule("staff", (WEBHOOKS,), body=WEBHOOK_BODY),
    ("api:webhook-detail", "GET"): ApiRule("staff", (WEBHOOKS,)),
    ("api:webhook-detail", "PATCH"): ApiRule("staff", (WEBHOOKS,), body={"description": "m"}),
    ("api:webhook-detail", "DELETE"): ApiRule("staff", (WEBHOOKS,)),
    ("api:webhook-deliveries", "GET"): ApiRule("staff", (WEBHOOKS,)),
    ("api:webhook-redeliver", "POST"): ApiRule("staff", (WEBHOOKS,), body={}),
    # Erasure destroys a customer's keys: its own permission, staff only.
    ("api:customer-erase", "POST"): ApiRule(
        "staff", ("privacy.erase_customer",), body={"reason": "matrix"}
    ),
}


def api_may(persona: Persona, rule: ApiRule) -> bool:
    if rule.kind == "public":
        return True
    if persona.anonymous:
        return False
    if rule.kind == "authenticated":
        return True
    if rule.kind == "order":
        return persona.owns_sample_order or (
            persona.staff and all(persona.has(p) for p in ("orders.view_ordersummary", *rule.perms))
        )
    if rule.kind == "staff":
        return persona.staff and all(persona.has(p) for p in rule.perms)
    raise AssertionError(f"unknown rule kind {rule.kind}")


def api_denied_status(persona: Persona, rule: ApiRule) -> int:
    if persona.anonymous:
        return 401
    return 404 if rule.kind == "order" else 403


# --- Rules for the admin ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPolicy:
    """What the admin ever lets anyone do with a model, beyond viewing it.

    Viewing (changelist, change page read-only, history) follows Django's rule: the model's
    view or change permission. Adding, saving changes and deleting also need the admin to
    allow them at all.
    """

    add: bool = False
    change: bool = False
    delete: bool = False
    #: Permissions (codename prefixes) the add page needs besides "add".
    add_also_needs: tuple[str, ...] = ()


EDITABLE = ModelPolicy(add=True, change=True, delete=True)
READ_ONLY = ModelPolicy()

MODEL_POLICIES: dict[str, ModelPolicy] = {
    # Django's UserAdmin: adding a user also needs the change permission (to set a password).
    "auth.user": ModelPolicy(add=True, change=True, delete=True, add_also_needs=("change",)),
    "auth.group": EDITABLE,
    # API tokens are issued (shown once) and revoked, never edited (backoffice/api_tokens.py).
    "knox.authtoken": ModelPolicy(add=True, delete=True),
    # DESIGN.md: events are never editable, in the admin or in SQL.
    "eventstore.storedevent": READ_ONLY,
    "eventstore.projectioncheckpoint": READ_ONLY,
    # Sagas change only through the engine and the operator services (retry, skip).
    "sagas.saga": READ_ONLY,
    # The failed-compensation queue: a view of sagas (a proxy model without permissions).
    "sagas.failedcompensation": READ_ONLY,
    # The needs-attention queue: likewise a view of sagas.
    "sagas.needsattention": READ_ONLY,
    "sagas.faultrule": EDITABLE,
    # Products are added and edited; never deleted (orders and reservations refer to them).
    "inventory.product": ModelPolicy(add=True, change=True),
    "inventory.reservation": READ_ONLY,
    # Payments are the gateway's record of money moved: nobody edits them.
    "payments.payment": READ_ONLY,
    "payments.refund": READ_ONLY,
    "payments.simulatedcharge": READ_ONLY,
    "payments.simulatedrefund": READ_ONLY,
    "payments.simulatedtransientfailure": READ_ONLY,
    # The order read model is a projection of the order's events.
    "orders.ordersummary": READ_ONLY,
    # Erasures are the record of who erased whom and why: never edited.
    "privacy.erasure": READ_ONLY,
    # Endpoints are registered and changed over the API (the secret is shown once); the
    # admin deletes them. Deliveries are the record of what was sent: never edited.
    "webhooks.webhookendpoint": ModelPolicy(delete=True),
    "webhooks.webhookdelivery": READ_ONLY,
}

#: A ModelAdmin's own URLs (by URL name): the permissions each needs besides viewing the model.
ADMIN_EXTRA_URL_RULES: dict[str, tuple[str, ...]] = {
    "sagas_saga_failed_compensations": (),
    "sagas_saga_needs_attention": (),
    "sagas_saga_retry": ("sagas.retry_saga",),
    "sagas_saga_skip": ("sagas.skip_compensation",),
    "sagas_saga_skip_step": ("sagas.skip_compensation",),
    "orders_ordersummary_cancel": ("orders.cancel_order",),
    # Django's own: setting another user's password needs the change permission.
    "auth_user_password_change": ("auth.change_user",),
}

#: Admin actions (model label, action name): the permissions each needs besides viewing the
#: model. ``delete_selected`` is Django's; it follows the model's delete policy.
ADMIN_ACTION_RULES: dict[tuple[str, str], tuple[str, ...]] = {
    ("sagas.saga", "retry_failed_compensations"): ("sagas.retry_saga",),
    ("sagas.saga", "skip_failed_compensations"): ("sagas.skip_compensation",),
    ("sagas.failedcompensation", "retry_failed_compensations"): ("sagas.retry_saga",),
    ("sagas.failedcompensation", "skip_failed_compensations"): ("sagas.skip_compensation",),
    ("sagas.saga", "skip_steps_needing_attention"): ("sagas.skip_compensation",),
    ("sagas.needsattention", "retry_failed_compensations"): ("sagas.retry_saga",),
    ("sagas.needsattention", "skip_steps_needing_attention"): ("sagas.skip_compensation",),
    ("orders.ordersummary", "cancel_orders"): ("orders.cancel_order",),
    ("orders.ordersummary", "erase_customers"): ("privacy.erase_customer",),
    ("webhooks.webhookendpoint", "reenable"): (WEBHOOKS,),
    ("webhooks.webhookdelivery", "redeliver"): (WEBHOOKS,),
}

#: The admin site's own pages (by URL name): "login" is open (staff already signed in are sent
#: on to the index), "app" is an app's page (staff who may view one of its models; others
#: get Django's 404), the rest are for any active staff.
ADMIN_SITE_RULES: dict[str, str] = {
    "index": "staff",
    "login": "login",
    "logout": "staff",
    "password_change": "staff",
    "password_change_done": "staff",
    "jsi18n": "staff",
    "app_list": "app",
    "autocomplete": "staff",
    "view_on_site": "staff",
}
#: The app whose page app_list is checked on.
SAMPLE_APP = "orders"

STANDARD_PAGES = ("changelist", "add", "change", "delete", "history")


#: Proxy models without permissions of their own: viewed with their concrete model's.
VIEWED_AS: dict[str, str] = {
    "sagas.failedcompensation": "sagas.saga",
    "sagas.needsattention": "sagas.saga",
}


def view_perms(label: str) -> tuple[str, str]:
    app_label, model_name = VIEWED_AS.get(label, label).split(".")
    return f"{app_label}.view_{model_name}", f"{app_label}.change_{model_name}"


def admin_can_view(persona: Persona, label: str) -> bool:
    return persona.staff and any(persona.has(p) for p in view_perms(label))


def admin_page_may(persona: Persona, label: str, page: str) -> bool:
    app_label, model_name = label.split(".")
    policy = MODEL_POLICIES[label]
    if page in ("changelist", "change", "history"):
        return admin_can_view(persona, label)
    if page == "add":
        needs = ("add", *policy.add_also_needs)
        return (
            policy.add
            and persona.staff
            and all(persona.has(f"{app_label}.{n}_{model_name}") for n in needs)
        )
    if page == "delete":
        return policy.delete and persona.staff and persona.has(f"{app_label}.delete_{model_name}")
    raise AssertionError(page)


def admin_extra_may(persona: Persona, label: str, url_name: str) -> bool:
    perms = ADMIN_EXTRA_URL_RULES[url_name]
    return admin_can_view(persona, label) and all(persona.has(p) for p in perms)


def admin_action_may(persona: Persona, label: str, action: str) -> bool:
    if action == "delete_selected":
        return admin_page_may(persona, label, "delete")
    perms = ADMIN_ACTION_RULES[(label, action)]
    return admin_can_view(persona, label) and all(persona.has(p) for p in perms)


# --- Discovery ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiTarget:
    name: str  # "api:order-detail"
    method: str
    kwargs: tuple[str, ...]


def _walk(patterns: list[Any], namespace: str = "", prefix: str = "") -> Iterator[Any]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, ns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield namespace, prefix + str(entry.pattern), entry


def api_targets() -> list[ApiTarget]:
    """Every route under /api/ and each HTTP method its view implements."""
    targets = []
    for namespace, route, pattern in _walk(get_resolver().url_patterns):
        if not route.startswith("api/"):
            continue
        assert pattern.name, f"API route {route} has no name: give it one and a rule"
        view_class = getattr(pattern.callback, "view_class", None) or getattr(
            pattern.callback, "cls", None
        )
        assert view_class is not None, f"API route {route} is not a class-based view"
        methods = [
            m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)
        ]
        for method in methods:
            kwargs = tuple(pattern.pattern.converters)
            targets.append(ApiTarget(f"{namespace}{pattern.name}", method, kwargs))
    return targets


@dataclass(frozen=True)
class AdminTarget:
    label: str  # model label, "" for the admin site's own pages
    kind: str  # "page", "extra", "site"
    name: str  # page name ("changelist", ...), or the URL name
    url_name: str
    kwargs: tuple[str, ...] = ()


def admin_targets() -> list[AdminTarget]:
    """Every registered ModelAdmin's pages and own URLs, and the admin site's pages."""
    targets = []
    model_url_names = set()
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        info = f"{model._meta.app_label}_{model._meta.model_name}"
        for pattern in model_admin.get_urls():
            if not pattern.name:
                continue
            model_url_names.add(pattern.name)
            page = pattern.name.removeprefix(f"{info}_")
            converters = tuple(getattr(pattern.pattern, "converters", {}))
            if pattern.name.startswith(f"{info}_") and page in STANDARD_PAGES:
                targets.append(AdminTarget(label, "page", page, pattern.name, converters))
            else:
                targets.append(AdminTarget(label, "extra", pattern.name, pattern.name, converters))
    for entry in admin.site.get_urls():
        if isinstance(entry, URLPattern) and entry.name and entry.name not in model_url_names:
            converters = tuple(entry.pattern.converters)
            targets.append(AdminTarget("", "site", entry.name, entry.name, converters))
    return targets


def admin_actions_for(user: User) -> dict[str, set[str]]:
    """The actions each ModelAdmin offers this user (Django filters them by permission)."""
    request = RequestFactory().get("/admin/")
    request.user = user
    return {
        model._meta.label_lower: set(model_admin.get_actions(request))
        for model, model_admin in admin.site._registry.items()
    }


def every_admin_action() -> set[tuple[str, str]]:
    superuser = User(username="probe", is_staff=True, is_superuser=True, is_active=True)
    return {
        (label, name) for label, names in admin_actions_for(superuser).items() for name in names
    }


# --- The test world -------------------------------------------------------------------------------


@dataclass
class World:
    owner: User
    order_id: UUID
    saga_id: UUID
    endpoint_id: int
    delivery_id: int


def _relevant_permissions() -> list[Permission]:
    """Every permission of a model in the admin, plus those the API rules name."""
    content_types = [ContentType.objects.get_for_model(m) for m in admin.site._registry]
    perms = set(Permission.objects.filter(content_type__in=content_types))
    for rule in API_RULES.values():
        for perm in rule.perms:
            app_label, codename = perm.split(".")
            perms.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return sorted(perms, key=lambda p: (p.content_type.app_label, p.codename))


def persona_names() -> list[str]:
    """Name every persona: the fixed ones, and staff holding each relevant permission alone."""
    names = [
        "anonymous",
        "client_owner",
        "client_other",
        "staff_no_perms",
        "staff_all_view",
        "superuser",
    ]
    for model in admin.site._registry:
        opts = model._meta
        names += [
            f"staff_with:{opts.app_label}.{a}_{opts.model_name}" for a in opts.default_permissions
        ]
        names += [f"staff_with:{opts.app_label}.{codename}" for codename, _ in opts.permissions]
    for rule in API_RULES.values():
        names += [f"staff_with:{p}" for p in rule.perms]
    return list(dict.fromkeys(names))


def make_persona(name: str, owner: User) -> Persona:
    if name == "anonymous":
        return Persona(name, None)
    if name == "client_owner":
        return Persona(name, owner, owns_sample_order=True)
    if name == "client_other":
        return Persona(name, make_user())
    if name == "staff_no_perms":
        return Persona(name, make_user(staff=True))
    if name == "superuser":
        return Persona(name, make_user(superuser=True))
    if name == "staff_all_view":
        perms = tuple(
            f"{p.content_type.app_label}.{p.codename}"
            for p in _relevant_permissions()
            if p.codename.startswith("view_")
        )
        return Persona(name, make_user(staff=True, perms=perms))
    if name.startswith("staff_with:"):
        return Persona(name, make_user(staff=True, perms=(name.removeprefix("staff_with:"),)))
    raise AssertionError(name)


def build_world() -> World:
    """An order placed by a client and run to CONFIRMED, then cancelled (rows in every table)."""
    make_product("SKU-M", price="3.00", stock=50)
    owner = make_user()
    owner_api = api_client(owner)
    placed = owner_api.post(
        "/api/orders/", {**ORDER_BODY, "payment_token": "tok_flaky"}, format="json"
    ).json()
    drive(UUID(placed["saga"]["id"]))
    cancelled = owner_api.post(f"/api/orders/{placed['id']}/cancel/", {}, format="json")
    assert cancelled.status_code == 202, cancelled.content
    drive(UUID(cancelled.json()["saga"]["id"]))
    failed_compensation_saga()  # a row in the failed-compensation queue (clears fault rules)
    fault_rule_set(
        saga_type="place_order",
        step="charge_payment",
        phase=Phase.ACTION,
        mode=FaultMode.TRANSIENT,
        times=1,
    )
    Group.objects.create(name="matrix")
    # An erasure on record, of another customer: the sample order keeps its contact.
    customer_erase(customer_id="c-matrix-erased", reason="matrix", actor="user:0")
    for projector in projectors():  # each projection's checkpoint row
        ProjectionCheckpoint.objects.get_or_create(name=projector.name)
    # Two endpoints, each with a delivery: the first (oldest) for the admin's pages, the
    # second for the API's routes, whose DELETE takes its delivery with it.
    for _ in range(2):
        endpoint = endpoint_create(url=WEBHOOK_URL, event_types=["order.created"]).endpoint
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=uuid4(),
            event_type="order.created",
            stream_type="order",
            stream_id=placed["id"],
            stream_version=1,
            payload={},
        )
    return World(
        owner=owner,
        order_id=UUID(placed["id"]),
        saga_id=UUID(placed["saga"]["id"]),
        endpoint_id=endpoint.id,
        delivery_id=delivery.id,
    )


def sample_of(label: str) -> Model:
    model = next(m for m in admin.site._registry if m._meta.label_lower == label)
    instance = model._default_manager.order_by("pk").first()
    assert instance is not None, f"no {label} row to check its admin pages: make one in build_world"
    return instance


def still_exists(instance: Model) -> bool:
    # By the primary key field itself: DRF's TokenProxy answers .pk with its user's id.
    field = instance._meta.pk
    assert field is not None
    lookup = {field.attname: getattr(instance, field.attname)}
    return type(instance)._default_manager.filter(**lookup).exists()


def kwargs_for(names: tuple[str, ...], *, label: str, world: World) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in names:
        if name == "order_id":
            values[name] = world.order_id
        elif name == "saga_id":
            values[name] = world.saga_id
        elif name == "endpoint_id":
            values[name] = world.endpoint_id
        elif name == "delivery_id":
            values[name] = world.delivery_id
        elif name == "customer_id":
            values[name] = ORDER_BODY["customer_id"]
        elif name in ("object_id", "id"):
            values[name] = sample_of(label).pk
        else:
            raise AssertionError(f"no sample value for URL argument {name!r}: add one here")
    return values


# --- Requests ------------------------------------------------------------------------------------


def api_client_for(persona: Persona) -> APIClient:
    return api_client(persona.user) if persona.user else APIClient()


def admin_client_for(persona: Persona) -> Client:
    client = Client()
    if persona.user is not None:
        client.force_login(persona.user)
    return client


def is_login_redirect(response: Any) -> bool:
    return response.status_code == 302 and "/admin/login/" in response["Location"]


def check_api(persona: Persona, world: World, problems: list[str]) -> None:
    client = api_client_for(persona)
    # Deletions last: the routes after them need the sample rows they would delete.
    for target in sorted(api_targets(), key=lambda t: t.method == "DELETE"):
        rule = API_RULES[(target.name, target.method)]
        url = reverse(target.name, kwargs=kwargs_for(target.kwargs, label="", world=world))
        body = rule.body
        response = (
            client.get(url)
            if target.method == "GET"
            else client.generic(
                target.method, url, data=_json(body), content_type="application/json"
            )
        )
        allowed = api_may(persona, rule)
        got = response.status_code
        if (allowed and got in (401, 403, 404)) or (
            not allowed and got != api_denied_status(persona, rule)
        ):
            want = "allowed" if allowed else api_denied_status(persona, rule)
            problems.append(f"{persona.name}: {target.method} {url} -> {got}, expected {want}")
        if got >= 500:
            problems.append(f"{persona.name}: {target.method} {url} -> {got}")

    # Lists never show another user's order unless staff may see every order.
    if not persona.anonymous:
        listed = {o["id"] for o in client.get("/api/orders/", {"page_size": 500}).json()["results"]}
        sees = persona.owns_sample_order or (
            persona.staff and persona.has("orders.view_ordersummary")
        )
        if (str(world.order_id) in listed) != sees:
            problems.append(f"{persona.name}: order list shows the sample order: {not sees}")


def _says_no_action_selected(client: Client, response: Any) -> bool:
    """Tell whether Django answered a forged action with "No action selected" (not run)."""
    if b"No action selected" in response.content:
        return True
    return b"No action selected" in client.get(reverse("admin:index")).content


def _json(body: Any) -> str:
    import json

    return json.dumps(body if body is not None else {})


def admin_target_may(persona: Persona, target: AdminTarget) -> bool:
    if target.kind == "page":
        return admin_page_may(persona, target.label, target.name)
    if target.kind == "extra":
        return admin_extra_may(persona, target.label, target.url_name)
    rule = ADMIN_SITE_RULES[target.name]
    if rule == "login":
        return True
    if rule == "app":
        return any(
            admin_can_view(persona, m._meta.label_lower)
            for m in admin.site._registry
            if m._meta.app_label == SAMPLE_APP
        )
    return persona.staff


def admin_answer_ok(persona: Persona, target: AdminTarget, allowed: bool, response: Any) -> bool:
    """Tell whether the answer is the one the rule expects (200, 403, 404 or a redirect)."""
    got = response.status_code
    rule = ADMIN_SITE_RULES.get(target.name) if target.kind == "site" else None
    if rule == "login" and persona.staff:
        return got == 302 and response["Location"] == reverse("admin:index")
    if allowed:
        return got == 200
    if not persona.staff:
        return is_login_redirect(response)
    return got == (404 if rule == "app" else 403)


def check_admin(
    persona: Persona, world: World, problems: list[str], *, only: Callable[[str], bool]
) -> None:
    client = admin_client_for(persona)
    for target in admin_targets():
        if target.label and not only(target.label):
            continue
        allowed = admin_target_may(persona, target)
        if target.name in ("logout", "view_on_site", "autocomplete"):
            continue  # logout ends the session; the other two need query data: see below
        kwargs = kwargs_for(target.kwargs, label=target.label, world=world)
        if target.name == "app_list":
            kwargs = {"app_label": SAMPLE_APP}
        url = reverse(f"admin:{target.url_name}", kwargs=kwargs)
        response = client.get(url)
        if not admin_answer_ok(persona, target, allowed, response):
            want = "allowed" if allowed else "denied"
            problems.append(f"{persona.name}: GET {url} -> {response.status_code}, expected {want}")

    check_admin_writes(persona, client, problems, only=only)
    check_admin_actions(persona, client, problems, only=only)


def check_admin_writes(
    persona: Persona, client: Client, problems: list[str], *, only: Callable[[str], bool]
) -> None:
    """Post to each change page (an empty form) and, where refused, each delete page."""
    for model in admin.site._registry:
        label = model._meta.label_lower
        if not only(label):
            continue
        app_label, model_name = label.split(".")
        policy = MODEL_POLICIES[label]
        sample = sample_of(label)
        info = f"admin:{app_label}_{model_name}"
        may_change = (
            policy.change and persona.staff and persona.has(f"{app_label}.change_{model_name}")
        )
        url = reverse(f"{info}_change", args=[sample.pk])
        response = client.post(url, {})
        # Allowed: the empty form comes back with its errors (nothing saved).
        if (response.status_code == 200) != may_change or not (
            may_change or response.status_code == 403 or is_login_redirect(response)
        ):
            problems.append(f"{persona.name}: POST {url} -> {response.status_code}")
        if not admin_page_may(persona, label, "delete"):
            url = reverse(f"{info}_delete", args=[sample.pk])
            response = client.post(url, {"post": "yes"})
            still_there = still_exists(sample)
            if not still_there or not (response.status_code == 403 or is_login_redirect(response)):
                problems.append(f"{persona.name}: POST {url} -> {response.status_code}")


def check_admin_actions(
    persona: Persona, client: Client, problems: list[str], *, only: Callable[[str], bool]
) -> None:
    offered = admin_actions_for(persona.user) if persona.user else {}
    for label, action in sorted(every_admin_action()):
        if not only(label):
            continue
        allowed = admin_action_may(persona, label, action)
        # Actions show on the changelist only: where it is refused, the offer means nothing.
        if admin_can_view(persona, label) and (action in offered.get(label, set())) != allowed:
            problems.append(f"{persona.name}: admin action {label}.{action} offered: {not allowed}")
        if not allowed:
            # A forged post of an action the user may not run must not run it.
            sample = sample_of(label)
            url = reverse(f"admin:{label.replace('.', '_')}_changelist")
            response = client.post(
                url, {"action": action, "_selected_action": [str(sample.pk)], "index": "0"}
            )
            said_no = response.status_code in (200, 302) and (
                # Django ignores action posts from users offered no action on the model.
                not offered.get(label) or _says_no_action_selected(client, response)
            )
            refused = response.status_code == 403 or is_login_redirect(response) or said_no
            if not refused or not still_exists(sample):
                problems.append(
                    f"{persona.name}: forged action {label}.{action} -> {response.status_code}"
                )


# --- Tests ---------------------------------------------------------------------------------------


def test_every_target_has_a_rule() -> None:
    """A new API route or method, admin page, admin URL or action needs a rule first."""
    api = {(t.name, t.method) for t in api_targets()}
    assert api - set(API_RULES) == set(), "API routes without a rule"
    assert set(API_RULES) - api == set(), "rules for API routes that no longer exist"

    admin_found = admin_targets()
    labels = {t.label for t in admin_found if t.label}
    assert labels - set(MODEL_POLICIES) == set(), "registered ModelAdmins without a policy"
    assert set(MODEL_POLICIES) - labels == set(), "policies for models no longer in the admin"
    extras = {t.url_name for t in admin_found if t.kind == "extra"}
    assert extras - set(ADMIN_EXTRA_URL_RULES) == set(), "admin URLs without a rule"
    assert set(ADMIN_EXTRA_URL_RULES) - extras == set(), "rules for admin URLs that are gone"
    site = {t.name for t in admin_found if t.kind == "site"}
    assert site - set(ADMIN_SITE_RULES) == set(), "admin site pages without a rule"

    actions = {a for a in every_admin_action() if a[1] != "delete_selected"}
    assert actions - set(ADMIN_ACTION_RULES) == set(), "admin actions without a rule"
    assert set(ADMIN_ACTION_RULES) - actions == set(), "rules for admin actions that are gone"


def test_the_generator_notices_a_new_model_admin() -> None:
    admin.site.register(Permission)
    try:
        labels = {t.label for t in admin_targets()}
        actions = every_admin_action()
    finally:
        admin.site.unregister(Permission)
    assert "auth.permission" in labels - set(MODEL_POLICIES)
    assert ("auth.permission", "delete_selected") in actions


@pytest.mark.urls("tests.security.urls_boom")
def test_the_generator_notices_a_new_api_route() -> None:
    with pytest.raises(AssertionError, match="give it one and a rule"):
        api_targets()  # urls_boom adds unnamed routes under /api/


@pytest.mark.parametrize("persona_name", persona_names())
def test_authorization_matrix(persona_name: str) -> None:
    world = build_world()
    persona = make_persona(persona_name, world.owner)
    problems: list[str] = []

    check_api(persona, world, problems)
    if persona_name.startswith("staff_with:"):
        # One permission alone: its own model's pages, and every model with extra pages or
        # actions (where a permission could leak). The other models' pages are covered by
        # staff_no_perms, which holds no less there than this persona.
        app_label, codename = persona_name.removeprefix("staff_with:").split(".")
        checked = {
            m._meta.label_lower
            for m in admin.site._registry
            if m._meta.app_label == app_label and codename.endswith(f"_{m._meta.model_name}")
        }
        checked |= {t.label for t in admin_targets() if t.kind == "extra"}
        checked |= {label for label, _ in every_admin_action()}
        check_admin(persona, world, problems, only=lambda label: label in checked)
    else:
        check_admin(persona, world, problems, only=lambda label: True)

    assert problems == [], "\n".join(problems)


def test_a_client_never_sees_another_clients_order() -> None:
    world = build_world()
    other = api_client(make_user())
    for path in (
        f"/api/orders/{world.order_id}/",
        f"/api/orders/{world.order_id}/events/",
        f"/api/orders/{world.order_id}/?version=1",
    ):
        response = other.get(path)
        assert response.status_code == 404, path
        assert response.json() == {"detail": "No order with this id."}
    assert other.post(f"/api/orders/{world.order_id}/cancel/", {}, format="json").status_code == 404
    assert other.get("/api/orders/").json()["count"] == 0
    assert other.get("/api/orders/", {"customer_id": "c-matrix"}).json()["count"] == 0
    assert OrderSummary.objects.filter(id=world.order_id).exists()
    assert Saga.objects.filter(id=world.saga_id).exists()
