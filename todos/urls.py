"""Todo routes: each answers with and without the trailing slash, never by redirect."""

from django.urls import re_path

from todos.accounts import RegisterView, TokenView
from todos.views import TodoViewSet

todo_list = TodoViewSet.as_view({"get": "list", "post": "create", "delete": "destroy_all"})
todo_detail = TodoViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)

urlpatterns = [
    re_path(r"^todos/?$", todo_list, name="todo-list"),
    re_path(
        rf"^todos/(?P<pk>{TodoViewSet.lookup_value_regex})/?$",
        todo_detail,
        name="todo-detail",
    ),
    re_path(r"^auth/register/?$", RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/token/?$", TokenView.as_view(), name="auth-token"),
]
