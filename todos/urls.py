"""Todo routes: each answers with and without the trailing slash, never by redirect."""

from django.urls import re_path

from todos.accounts import LogoutAllView, LogoutView, RegisterView, TokenView
from todos.exports import ExportViewSet
from todos.stats import StatsView
from todos.views import TodoViewSet

todo_list = TodoViewSet.as_view({"get": "list", "post": "create", "delete": "destroy_all"})
todo_detail = TodoViewSet.as_view(
    {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
)
export_list = ExportViewSet.as_view({"post": "create"})
export_detail = ExportViewSet.as_view({"get": "retrieve"})
export_download = ExportViewSet.as_view({"get": "download"})
EXPORT_ID = rf"(?P<pk>{ExportViewSet.lookup_value_regex})"

urlpatterns = [
    re_path(r"^todos/?$", todo_list, name="todo-list"),
    re_path(
        rf"^todos/(?P<pk>{TodoViewSet.lookup_value_regex})/?$",
        todo_detail,
        name="todo-detail",
    ),
    re_path(r"^auth/register/?$", RegisterView.as_view(), name="auth-register"),
    re_path(r"^auth/token/?$", TokenView.as_view(), name="auth-token"),
    re_path(r"^auth/logout/?$", LogoutView.as_view(), name="auth-logout"),
    re_path(r"^auth/logout-all/?$", LogoutAllView.as_view(), name="auth-logout-all"),
    re_path(r"^exports/?$", export_list, name="export-list"),
    re_path(rf"^exports/{EXPORT_ID}/?$", export_detail, name="export-detail"),
    re_path(rf"^exports/{EXPORT_ID}/download/?$", export_download, name="export-download"),
    re_path(r"^stats/?$", StatsView.as_view(), name="stats"),
]
