"""JSON representation of a Todo, and the validation of what clients send."""

import copy

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from todos.fields import (
    RejectUnknownFieldsMixin,
    StrictBooleanField,
    StrictCharField,
    StrictIntegerField,
)
from todos.models import TITLE_MAX_LENGTH, Todo

# Postgres `integer`: a larger `order` would be a database error instead of a 400.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@extend_schema_field(OpenApiTypes.URI)
class TodoUrlField(serializers.Field):
    """The todo's absolute URL, from a prefix computed once per request.

    DRF's `HyperlinkedIdentityField` calls `reverse()` for every row, which was half the CPU of
    a 100-item list; the prefix makes it a string concatenation.
    """

    def __init__(self, **kwargs):
        kwargs["source"] = "*"
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        return f"{self.context['todo_url_prefix']}{value.pk}"


class TodoSerializer(RejectUnknownFieldsMixin, serializers.ModelSerializer):
    """Validates what clients write. Responses are rendered by todos/representation.py, whose
    output a test holds equal to this serializer's."""

    url = TodoUrlField()
    title = StrictCharField(max_length=TITLE_MAX_LENGTH, trim_whitespace=True)
    completed = StrictBooleanField(required=False)
    order = StrictIntegerField(
        required=False, allow_null=True, min_value=INT32_MIN, max_value=INT32_MAX
    )

    class Meta:
        model = Todo
        fields = (
            "id",
            "url",
            "title",
            "completed",
            "order",
            "due_at",
            "created_at",
            "updated_at",
        )
        read_only_fields = ("id", "created_at", "updated_at")
        extra_kwargs = {"due_at": {"required": False, "allow_null": True}}

    def get_fields(self):
        """The fields, built from the model once per process instead of once per request: the
        introspection cost about 0.7 ms of every write (profiled in process). Each serializer
        still gets its own copies, bound to it: shallow ones, since binding only sets attributes
        of the copy and validation changes none of the state they share (validators, error
        messages). DRF's deepcopy re-runs every field's `__init__`, 8 % of a create's CPU."""
        cls = type(self)
        if "_built_fields" not in cls.__dict__:
            cls._built_fields = super().get_fields()
        return {name: copy.copy(field) for name, field in cls._built_fields.items()}

    def get_validators(self):
        """DRF's validators from the model's unique constraints (Todo has none, so the list is
        empty), derived once per process as the fields are: ModelSerializer walks the model's
        constraints and the fields' sources for every serializer, about 50 us of each create's
        CPU measured in process. The validators themselves keep no state between calls."""
        cls = type(self)
        if "_built_validators" not in cls.__dict__:
            cls._built_validators = super().get_validators()
        return list(cls._built_validators)
