"""GET /api/products/: the catalogue with its stock."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from infrastructure.api.errors import ERROR_RESPONSES
from infrastructure.api.pagination import PAGE_PARAMETERS, StandardPagination
from inventory.selectors import product_list


class ProductSerializer(serializers.Serializer):
    sku = serializers.CharField()
    name = serializers.CharField()
    price = serializers.DecimalField(max_digits=12, decimal_places=2)
    currency = serializers.CharField()
    stock_on_hand = serializers.IntegerField()
    stock_reserved = serializers.IntegerField()
    stock_available = serializers.IntegerField()


class ProductListView(APIView):
    pagination_class = StandardPagination

    @extend_schema(
        summary="The catalogue with stock",
        parameters=PAGE_PARAMETERS,
        responses={200: ProductSerializer(many=True), **ERROR_RESPONSES(400, 401, 403, 404)},
    )
    def get(self, request: Request) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(product_list().order_by("sku"), request, view=self)
        return paginator.get_paginated_response(ProductSerializer(page or [], many=True).data)
