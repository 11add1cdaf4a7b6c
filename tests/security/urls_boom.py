"""The project's URLs plus views that fail on purpose (tests of the error answers only)."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config import urls as project_urls

SECRET_LOOKING_MESSAGE = (
    'SELECT "auth_user"."password" FROM "auth_user" -- DATABASES SECRET_KEY psycopg.errors'
)


def plain_boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError(SECRET_LOOKING_MESSAGE)


class DrfBoom(APIView):
    authentication_classes: list[type] = []
    permission_classes: list[type] = []

    def get(self, request: Request) -> Response:
        raise RuntimeError(SECRET_LOOKING_MESSAGE)


urlpatterns = [
    path("api/boom/plain/", plain_boom),
    path("api/boom/drf/", DrfBoom.as_view()),
    *project_urls.urlpatterns,
]
handler400 = project_urls.handler400
handler403 = project_urls.handler403
handler404 = project_urls.handler404
handler500 = project_urls.handler500
