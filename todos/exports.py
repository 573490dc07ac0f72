"""The export API: ask for a file of all one's todos, poll its status, download it.

`POST /api/exports {"format": "json"|"csv"}` answers 202 at once with the export's URL; a worker
writes the file (tasks/exports.py) into Postgres, so `download_url` works on every web replica.
"""

from django.db import DEFAULT_DB_ALIAS
from django.http import StreamingHttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

from todos import export_files, selectors, services
from todos.fields import RejectUnknownFieldsMixin
from todos.models import Export


class StrictChoiceField(serializers.ChoiceField):
    """Accepts only a JSON string among the choices; DRF's own field also matches `str(data)`."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class ExportCreateSerializer(RejectUnknownFieldsMixin, serializers.Serializer):
    format = StrictChoiceField(choices=Export.Format.choices, default=Export.Format.JSON)


class ExportSerializer(serializers.ModelSerializer):
    url = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = ("id", "url", "format", "status", "created_at", "finished_at", "download_url")
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, export: Export) -> str:
        return self.context["request"].build_absolute_uri(
            reverse("export-detail", args=[export.pk])
        )

    @extend_schema_field({"type": "string", "format": "uri", "nullable": True})
    def get_download_url(self, export: Export) -> str | None:
        if export.status != Export.Status.DONE:
            return None
        return self.context["request"].build_absolute_uri(
            reverse("export-download", args=[export.pk])
        )


class ExportNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The export is not done: poll its URL until `status` is `done`."
    default_code = "export_not_ready"


class ExportViewSet(viewsets.GenericViewSet):
    serializer_class = ExportSerializer
    queryset = Export.objects.none()  # every query goes through the owner-scoped selectors
    lookup_value_regex = "[0-9]{1,18}"

    def perform_content_negotiation(self, request, force=False):
        # The download is a file of its own type: a client asking for text/csv must get it,
        # not a 406 from the API's JSON renderers (which still render any error).
        return super().perform_content_negotiation(
            request, force=force or self.action == "download"
        )

    def get_export(self, *, using: str | None = None) -> Export:
        try:
            return selectors.export_get(
                owner=self.request.user, export_id=int(self.kwargs["pk"]), using=using
            )
        except Export.DoesNotExist:
            raise NotFound() from None

    @extend_schema(
        summary="Ask for an export of all the caller's todos",
        request=ExportCreateSerializer,
        responses={202: ExportSerializer},
    )
    def create(self, request):
        serializer = ExportCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        export = services.export_create(
            owner=request.user,
            export_format=serializer.validated_data["format"],
            # As TodoViewSet computes it: the file's todo URLs are the ones this client sees.
            todo_url_prefix=request.build_absolute_uri(reverse("todo-list")) + "/",
        )
        data = self.get_serializer(export).data
        return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": data["url"]})

    @extend_schema(summary="An export's status, and its download URL once done")
    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_export()).data)

    @extend_schema(
        summary="Download a finished export (JSON array or CSV of the caller's todos)",
        responses={
            (200, "application/json"): OpenApiResponse(
                {"type": "array", "items": {"$ref": "#/components/schemas/Todo"}}
            ),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            409: OpenApiResponse(description="not done yet"),
        },
    )
    def download(self, request, pk=None):
        # From the primary, where the worker wrote it: a standby a moment behind could still
        # show the export running, or miss a chunk.
        export = self.get_export(using=DEFAULT_DB_ALIAS)
        if export.status != Export.Status.DONE:
            raise ExportNotReady()
        chunk_ids = selectors.export_chunk_ids(export=export)
        response = StreamingHttpResponse(
            # One chunk (about half a megabyte) in memory at a time, whatever the file's size.
            (
                selectors.export_chunk_data(owner_id=export.owner_id, chunk_id=chunk_id)
                for chunk_id in chunk_ids
            ),
            content_type=export_files.CONTENT_TYPES[export.format],
        )
        response["Content-Length"] = str(export.size_bytes)
        response["Content-Disposition"] = (
            f'attachment; filename="todos-{export.pk}.{export.format}"'
        )
        return response
