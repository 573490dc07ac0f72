"""The Todo API: a thin viewset that parses, calls services and selectors, and renders."""

import hashlib
import json

from django.http import HttpResponse
from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from config import response_cache
from config.response_cache import CachedResponse
from todos import conditional, selectors, services
from todos.cache import cached_or_computed
from todos.filters import TodoFilter
from todos.models import Todo
from todos.pagination import KeysetPagination
from todos.representation import todo_representation, todo_rows
from todos.serializers import TodoSerializer

LIST_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="page size, 1-1000 (default 100)"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="from the Link rel=next header"),
    OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        description="order, created_at, due_at or title; prefix '-' to reverse",
    ),
]

IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="retrying with the same key returns the first answer instead of a second todo",
)
IF_MATCH_HEADER = OpenApiParameter(
    "If-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="the ETag you last saw; a stale one is answered 412 and nothing changes",
)
IF_NONE_MATCH_HEADER = OpenApiParameter(
    "If-None-Match",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    description="the ETag you hold; unchanged → 304 without a body",
)


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The todo changed since the ETag in If-Match: fetch it again."
    default_code = "precondition_failed"


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request body."
    default_code = "idempotency_key_reused"


def idempotency_key(request) -> str | None:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ValidationError({"Idempotency-Key": ["Must be 1-255 printable ASCII characters."]})
    return key


def body_fingerprint(data) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@extend_schema_view(
    list=extend_schema(
        parameters=[*LIST_PARAMETERS, IF_NONE_MATCH_HEADER], summary="List the caller's todos"
    ),
    create=extend_schema(parameters=[IDEMPOTENCY_HEADER]),
    retrieve=extend_schema(parameters=[IF_NONE_MATCH_HEADER]),
    update=extend_schema(parameters=[IF_MATCH_HEADER]),
    partial_update=extend_schema(parameters=[IF_MATCH_HEADER]),
    destroy=extend_schema(parameters=[IF_MATCH_HEADER]),
)
class TodoViewSet(viewsets.GenericViewSet):
    serializer_class = TodoSerializer
    queryset = Todo.objects.none()  # every query goes through the owner-scoped selectors
    filter_backends = [DjangoFilterBackend]
    filterset_class = TodoFilter
    lookup_value_regex = "[0-9]{1,18}"

    def todo_url_prefix(self) -> str:
        # One reverse() per request, not per row: see TodoUrlField.
        return self.request.build_absolute_uri(reverse("todo-list")) + "/"

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "todo_url_prefix": self.todo_url_prefix()}

    def get_object(self) -> Todo:
        try:
            return selectors.todo_get(owner=self.request.user, todo_id=int(self.kwargs["pk"]))
        except Todo.DoesNotExist:
            raise NotFound() from None

    def list(self, request):
        def compute() -> CachedResponse:
            todos = self.filter_queryset(selectors.todo_list(owner=request.user))
            pagination = KeysetPagination()
            page = pagination.paginate(todo_rows(todos), request)
            prefix = self.todo_url_prefix()
            body = JSONRenderer().render([todo_representation(row, prefix) for row in page])
            return CachedResponse(conditional.body_etag(body), pagination.next_link() or "", body)

        return self.cacheable(request, compute)

    def retrieve(self, request, pk=None):
        def compute() -> CachedResponse:
            todo = self.get_object()
            body = JSONRenderer().render(self.get_serializer(todo).data)
            return CachedResponse(conditional.todo_etag(todo), "", body)

        return self.cacheable(request, compute)

    def cacheable(self, request, compute):
        """Answer a JSON read from the response cache, or compute and fill it; honour
        `If-None-Match`. The browsable API (HTML) is always rendered afresh."""
        if request.accepted_renderer.format != "json":
            cached = compute()
            return Response(json.loads(cached.body), headers=self.entity_headers(cached))
        self.remember_token(request)
        cached, outcome = cached_or_computed(request, user_id=request.user.pk, compute=compute)
        headers = {**self.entity_headers(cached), "X-Cache": outcome}
        if conditional.none_match(request.headers.get("If-None-Match"), cached.etag):
            response = HttpResponse(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = HttpResponse(cached.body, content_type="application/json")
        for name, value in headers.items():
            response[name] = value
        return response

    @staticmethod
    def entity_headers(cached: CachedResponse) -> dict:
        headers = {"ETag": cached.etag}
        if cached.link:
            headers["Link"] = f'<{cached.link}>; rel="next"'
        return headers

    @staticmethod
    def remember_token(request) -> None:
        """Teach the gateway this token, so the next read can be a one-round-trip hit."""
        gate = request.META.get("todo_scale.gate")
        token = getattr(request.auth, "key", None)
        if token and response_cache.enabled() and not (gate and gate.user_id == request.user.pk):
            response_cache.token_remember(token, request.user.pk)

    def create(self, request):
        key = idempotency_key(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        if key is None:
            todo = services.todo_create(owner=request.user, **serializer.validated_data)
            body, replayed = self.get_serializer(todo).data, False
        else:
            try:
                record, replayed = services.todo_create_idempotent(
                    owner=request.user,
                    key=key,
                    fingerprint=body_fingerprint(request.data),
                    fields=serializer.validated_data,
                    todo_url_prefix=self.todo_url_prefix(),
                )
            except services.IdempotencyKeyReused:
                raise IdempotencyKeyReused() from None
            body = record.response_body
        headers = {"Location": body["url"]}
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(body, status=status.HTTP_201_CREATED, headers=headers)

    @extend_schema(
        operation_id="todos_destroy_all",
        summary="Delete all the caller's todos",
        request=None,
        responses={204: None},
    )
    def destroy_all(self, request):
        services.todo_delete_all(owner=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def update(self, request, pk=None, partial=False):
        todo = self.get_object()
        serializer = self.get_serializer(todo, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        try:
            todo = services.todo_update_checked(
                owner=request.user,
                todo_id=todo.pk,
                changes=serializer.validated_data,
                if_match=request.headers.get("If-Match"),
            )
        except Todo.DoesNotExist:
            raise NotFound() from None
        except services.PreconditionFailed:
            raise PreconditionFailed() from None
        return Response(
            self.get_serializer(todo).data, headers={"ETag": conditional.todo_etag(todo)}
        )

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    def destroy(self, request, pk=None):
        try:
            services.todo_delete_checked(
                owner=request.user,
                todo_id=int(pk),
                if_match=request.headers.get("If-Match"),
            )
        except Todo.DoesNotExist:
            raise NotFound() from None
        except services.PreconditionFailed:
            raise PreconditionFailed() from None
        return Response(status=status.HTTP_204_NO_CONTENT)
