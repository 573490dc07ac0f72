"""The Todo API: a thin viewset that parses, calls services and selectors, and renders."""

from django_filters.rest_framework import DjangoFilterBackend
from rest_framework import status, viewsets
from rest_framework.exceptions import APIException, NotFound
from rest_framework.response import Response

from config.edge.http_cache import CachedResponse
from todos import reads, selectors, services, writes
from todos.cache import CachedReadMixin
from todos.filters import TodoFilter
from todos.models import Todo
from todos.schema import destroy_all_schema, todo_schema
from todos.serializers import TodoSerializer


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "The todo changed since the ETag in If-Match: fetch it again."
    default_code = "precondition_failed"


class IdempotencyKeyReused(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request body."
    default_code = "idempotency_key_reused"


@todo_schema
class TodoViewSet(CachedReadMixin, viewsets.GenericViewSet):
    serializer_class = TodoSerializer
    queryset = Todo.objects.none()  # every query goes through the owner-scoped selectors
    filter_backends = [DjangoFilterBackend]
    filterset_class = TodoFilter
    lookup_value_regex = "[0-9]{1,18}"

    def filter_queryset(self, queryset):
        # django-filter builds a form class for every request it filters (about 0.7 ms of a
        # 100-todo list, profiled in process); with none of its parameters given (an empty one
        # filters nothing either) there is nothing to filter or to validate.
        if not any(
            self.request.query_params.get(name) for name in self.filterset_class.base_filters
        ):
            return queryset
        return super().filter_queryset(queryset)

    def todo_url_prefix(self) -> str:
        # Once per request: the serializer's context and the response both need it.
        if not hasattr(self, "_todo_url_prefix"):
            self._todo_url_prefix = reads.todo_url_prefix(self.request)
        return self._todo_url_prefix

    def get_serializer_context(self):
        return {**super().get_serializer_context(), "todo_url_prefix": self.todo_url_prefix()}

    def get_object(self) -> Todo:
        try:
            return selectors.todo_get(owner=self.request.user, todo_id=int(self.kwargs["pk"]))
        except Todo.DoesNotExist:
            raise NotFound() from None

    def list(self, request):
        return self.cached_read(request, self.render_page)

    def retrieve(self, request, pk=None):
        return self.cached_read(request, self.render_item)

    def render_page(self) -> CachedResponse:
        todos = self.filter_queryset(selectors.todo_list(owner=self.request.user))
        return reads.page_response(todos, self.request)

    def render_item(self) -> CachedResponse:
        try:
            return reads.item_response(self.request.user, int(self.kwargs["pk"]), self.request)
        except Todo.DoesNotExist:
            raise NotFound() from None

    def create(self, request):
        key = writes.idempotency_key(request)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            body, replayed = writes.create(
                owner=request.user,
                data=request.data,
                fields=serializer.validated_data,
                key=key,
                todo_url_prefix=self.todo_url_prefix(),
            )
        except services.IdempotencyKeyReused:
            raise IdempotencyKeyReused() from None
        return Response(
            body, status=status.HTTP_201_CREATED, headers=writes.created_headers(body, replayed)
        )

    @destroy_all_schema
    def destroy_all(self, request):
        services.todo_delete_all(owner=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def update(self, request, pk=None, partial=False):
        try:
            body, etag = writes.update(
                owner=request.user,
                todo_id=int(pk),
                data=request.data,
                partial=partial,
                if_match=request.headers.get("If-Match"),
                todo_url_prefix=self.todo_url_prefix(),
            )
        except Todo.DoesNotExist:
            raise NotFound() from None
        except services.PreconditionFailed:
            raise PreconditionFailed() from None
        return Response(body, headers={"ETag": etag})

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
