"""Serializers whose fields are built once per class instead of once per use.

DRF deep-copies a serializer's declared fields (and, through nested serializers, theirs) each
time an instance first touches ``fields``: for a small body that copy costs several times the
parsing or formatting itself. A serializer whose fields depend on nothing of the instance (no
``context``, ``instance`` or ``partial`` read by a field) can build them once and share them,
as Django's forms share their declared fields' widgets.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rest_framework import serializers
from rest_framework.utils.serializer_helpers import BindingDict


class PrebuiltFieldsMixin:
    """Bind the serializer's fields once, on a prototype instance, and share them.

    For serializers whose fields read nothing from the instance using them: a field's
    ``context``, ``root`` and ``parent`` are the prototype's. The instance's own methods
    (``validate_<field>``, ``validate``, ``to_representation``) still run on the instance.
    Fields hold no state between calls, so threads may share them.
    """

    _prebuilt_fields: ClassVar[BindingDict | None] = None

    @property
    def fields(self) -> BindingDict:
        cls = type(self)
        built = cls.__dict__.get("_prebuilt_fields")
        if built is None:
            prototype: Any = cls()
            built = BindingDict(prototype)
            for name, field in prototype.get_fields().items():
                built[name] = field
            # A race builds two equal sets; either is fine to keep.
            cls._prebuilt_fields = built
        return built


class PrebuiltSerializer(PrebuiltFieldsMixin, serializers.Serializer):
    """A plain serializer with prebuilt, shared fields (see ``PrebuiltFieldsMixin``)."""
