"""Strict JSON serializer fields: a string is never silently turned into a bool or a number."""

from rest_framework import serializers


class StrictBooleanField(serializers.BooleanField):
    """Accepts only JSON `true`/`false`; DRF's own field also takes "yes", "on", 1, "1"..."""

    default_error_messages = {"invalid": "Must be a JSON boolean (true or false)."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid")


class StrictIntegerField(serializers.IntegerField):
    """Accepts only JSON integers; DRF's own field also takes "5" and 5.0."""

    default_error_messages = {"invalid": "Must be a JSON integer."}

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """Accepts only JSON strings; DRF's own field also turns 5 into "5"."""

    default_error_messages = {"invalid": "Must be a JSON string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class RejectUnknownFieldsMixin:
    """Answer 400 naming each field the serializer does not declare, instead of ignoring it.

    A typo (`"complete": true`) would otherwise succeed and change nothing.
    """

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)
