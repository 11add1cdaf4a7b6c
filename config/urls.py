"""URL configuration: the admin, and the REST API under /api/."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from backoffice.metrics import metrics_view
from backoffice.security import admin_login
from infrastructure.api.health import HealthView
from inventory.api import ProductListView
from orders.api import (
    CustomerEraseView,
    OrderCancelView,
    OrderDetailView,
    OrderEventsView,
    OrderListCreateView,
)
from sagas.api import SagaDetailView, SagaListView, SagaRetryView, SagaSkipView
from webhooks.api import (
    WebhookDeliveriesView,
    WebhookDetailView,
    WebhookListView,
    WebhookRedeliverView,
)

api_patterns = [
    path("health/", HealthView.as_view(), name="health"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("products/", ProductListView.as_view(), name="product-list"),
    path("orders/", OrderListCreateView.as_view(), name="order-list"),
    path("orders/<str:order_id>/", OrderDetailView.as_view(), name="order-detail"),
    path("orders/<str:order_id>/events/", OrderEventsView.as_view(), name="order-events"),
    path("orders/<str:order_id>/cancel/", OrderCancelView.as_view(), name="order-cancel"),
    path("customers/<str:customer_id>/erase/", CustomerEraseView.as_view(), name="customer-erase"),
    path("sagas/", SagaListView.as_view(), name="saga-list"),
    path("sagas/<str:saga_id>/", SagaDetailView.as_view(), name="saga-detail"),
    path("sagas/<str:saga_id>/retry/", SagaRetryView.as_view(), name="saga-retry"),
    path("sagas/<str:saga_id>/skip/", SagaSkipView.as_view(), name="saga-skip"),
    path("webhooks/", WebhookListView.as_view(), name="webhook-list"),
    path("webhooks/<str:endpoint_id>/", WebhookDetailView.as_view(), name="webhook-detail"),
    path(
        "webhooks/<str:endpoint_id>/deliveries/",
        WebhookDeliveriesView.as_view(),
        name="webhook-deliveries",
    ),
    path(
        "webhooks/<str:endpoint_id>/deliveries/<str:delivery_id>/redeliver/",
        WebhookRedeliverView.as_view(),
        name="webhook-redeliver",
    ),
]

urlpatterns = [
    # Before the admin's own login URL: the same page, throttled (backoffice/security.py).
    path("admin/login/", admin_login, name="admin-login"),
    path("admin/", admin.site.urls),
    path("api/", include((api_patterns, "api"), namespace="api")),
    path("metrics", metrics_view, name="metrics"),
]

handler400 = "infrastructure.api.errors.bad_request"
handler403 = "infrastructure.api.errors.permission_denied"
handler404 = "infrastructure.api.errors.page_not_found"
handler500 = "infrastructure.api.errors.server_error"
