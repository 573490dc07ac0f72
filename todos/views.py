"""The Todo API: a thin viewset that parses, calls services and selectors, and renders."""

from django.urls import reverse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from todos import selectors, services
from todos.filters import TodoFilter
from todos.models import Todo
from todos.pagination import KeysetPagination
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


@extend_schema_view(
    list=extend_schema(parameters=LIST_PARAMETERS, summary="List the caller's todos"),
)
class TodoViewSet(viewsets.GenericViewSet):
    serializer_class = TodoSerializer
    queryset = Todo.objects.none()  # every query goes through the owner-scoped selectors
    filter_backends = [DjangoFilterBackend]
    filterset_class = TodoFilter
    lookup_value_regex = "[0-9]{1,18}"

    def get_serializer_context(self):
        context = super().get_serializer_context()
        # One reverse() per request, not per row: see TodoUrlField.
        context["todo_url_prefix"] = self.request.build_absolute_uri(reverse("todo-list")) + "/"
        return context

    def get_object(self) -> Todo:
        try:
            return selectors.todo_get(owner=self.request.user, todo_id=int(self.kwargs["pk"]))
        except Todo.DoesNotExist:
            raise NotFound() from None

    def list(self, request):
        todos = self.filter_queryset(selectors.todo_list(owner=request.user))
        pagination = KeysetPagination()
        page = pagination.paginate(todos, request)
        serializer = self.get_serializer(page, many=True)
        return Response(serializer.data, headers=pagination.headers())

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        todo = services.todo_create(owner=request.user, **serializer.validated_data)
        data = self.get_serializer(todo).data
        return Response(data, status=status.HTTP_201_CREATED, headers={"Location": data["url"]})

    @extend_schema(
        operation_id="todos_destroy_all",
        summary="Delete all the caller's todos",
        request=None,
        responses={204: None},
    )
    def destroy_all(self, request):
        services.todo_delete_all(owner=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    def update(self, request, pk=None, partial=False):
        todo = self.get_object()
        serializer = self.get_serializer(todo, data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        todo = services.todo_update(todo=todo, changes=serializer.validated_data)
        return Response(self.get_serializer(todo).data)

    def partial_update(self, request, pk=None):
        return self.update(request, pk=pk, partial=True)

    def destroy(self, request, pk=None):
        services.todo_delete(todo=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
