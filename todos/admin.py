"""Django admin for operators: find, filter and bulk-edit todos at any table size; look at and
revoke API tokens."""

import json

from django.contrib import admin, messages
from django.contrib.admin.filters import DateFieldListFilter
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.utils.functional import cached_property

from todos import services
from todos.models import ApiToken, Export, OutboxMessage, Todo


class EstimatedCountPaginator(Paginator):
    """A paginator whose count never scans a huge table.

    The changelist always counts its rows for the page links. On Postgres the exact count runs
    under a short statement timeout; past it, the planner's estimate is shown instead, so the
    page stays fast at 10 million rows. Other databases count exactly.
    """

    # Long enough for a filtered count of a few hundred thousand rows, short enough that an
    # operator does not notice (milliseconds).
    COUNT_TIMEOUT_MS = 200

    @cached_property
    def count(self):
        queryset = self.object_list
        connection = connections[queryset.db]
        if connection.vendor != "postgresql":
            return super().count
        try:
            with transaction.atomic(using=queryset.db), connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = %s", [self.COUNT_TIMEOUT_MS])
                return queryset.count()
        except OperationalError:
            return self._estimate(queryset)

    @staticmethod
    def _estimate(queryset) -> int:
        """The planner's row estimate for this queryset's SQL (EXPLAIN, no execution)."""
        sql, params = queryset.query.sql_with_params()
        with connections[queryset.db].cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            plan = cursor.fetchone()[0]
        if isinstance(plan, str):
            plan = json.loads(plan)
        return int(plan[0]["Plan"]["Plan Rows"])


class OwnerFilter(admin.SimpleListFilter):
    """Filter by the owner's exact username, typed in a box.

    Django's default FK filter lists every user on each page load, which does not scale.
    """

    title = "owner"
    parameter_name = "owner"
    template = "admin/todos/input_filter.html"

    def lookups(self, request, model_admin):
        return ()

    def has_output(self):
        return True

    def choices(self, changelist):
        # The template gets no changelist: hand it the other active parameters to keep.
        kept = {k: v for k, v in changelist.params.items() if k != self.parameter_name}
        yield {"kept_params": kept, "value": self.value() or ""}

    def queryset(self, request, queryset):
        username = self.value()
        if username:
            return queryset.filter(owner__username=username)
        return queryset


@admin.register(Todo)
class TodoAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "title",
        "owner",
        "completed",
        "order",
        "due_at",
        "created_at",
    )
    list_display_links = ("id", "title")
    list_filter = ("completed", ("due_at", DateFieldListFilter), OwnerFilter)
    search_fields = ("title",)
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    readonly_fields = ("created_at", "updated_at")
    ordering = ("-id",)
    list_per_page = 50
    paginator = EstimatedCountPaginator
    # The "N total" link next to filtered counts is a second COUNT(*) over the whole table.
    show_full_result_count = False
    # "Show counts" would run one COUNT per filter option over the whole table.
    show_facets = admin.ShowFacets.NEVER
    actions = ("mark_completed", "mark_not_completed")

    # The admin's own add, edit and delete paths write through the services, like the API: an
    # operator's change moves the owners' cached lists to a new generation, marks their
    # read-your-writes position and, when completion changes, recomputes their statistics.
    def save_model(self, request, obj, form, change):
        if change:
            changes = {name: form.cleaned_data[name] for name in form.changed_data}
            saved = services.todo_operator_update(todo_id=obj.pk, changes=changes)
        else:
            fields = {
                name: form.cleaned_data[name]
                for name in services.TODO_WRITABLE_FIELDS
                if name in form.cleaned_data
            }
            saved = services.todo_create(owner=form.cleaned_data["owner"], **fields)
        self._adopt(obj, saved)

    @staticmethod
    def _adopt(obj: Todo, saved: Todo) -> None:
        """Make the form's instance the row the service saved: the admin logs it, links to it
        and redirects to it afterwards."""
        for field in Todo._meta.concrete_fields:
            setattr(obj, field.attname, getattr(saved, field.attname))
        obj._state.adding = False
        obj._state.db = saved._state.db

    def delete_model(self, request, obj):
        services.todo_delete(todo=obj)

    def delete_queryset(self, request, queryset):
        services.todos_delete(todos=queryset)

    @admin.action(description="Mark selected todos as completed")
    def mark_completed(self, request, queryset):
        changed = services.todos_set_completed(todos=queryset, completed=True)
        self.message_user(request, f"{changed} todos marked completed.", messages.SUCCESS)

    @admin.action(description="Mark selected todos as not completed")
    def mark_not_completed(self, request, queryset):
        changed = services.todos_set_completed(todos=queryset, completed=False)
        self.message_user(request, f"{changed} todos marked not completed.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows the system writes: operators look, the system changes them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class PendingFilter(admin.SimpleListFilter):
    title = "delivery"
    parameter_name = "sent"

    def lookups(self, request, model_admin):
        return (("no", "waiting for the broker"), ("yes", "sent"))

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(sent_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(sent_at__isnull=False)
        return queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ReadOnlyAdmin):
    """The outbox: a growing list "waiting for the broker" means the broker or the relay is down."""

    list_display = ("id", "task_name", "task_id", "created_at", "sent_at", "attempts", "last_error")
    list_filter = (PendingFilter, "task_name")
    search_fields = ("task_id",)
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER

    def has_delete_permission(self, request, obj=None):
        # A deleted unsent row is work lost for good; housekeeping removes sent ones.
        return False


@admin.register(Export)
class ExportAdmin(ReadOnlyAdmin):
    list_display = ("id", "owner", "format", "status", "todo_count", "size_bytes", "created_at")
    list_filter = ("status", "format")
    list_select_related = ("owner",)
    raw_id_fields = ("owner",)
    search_fields = ("owner__username",)
    ordering = ("-id",)
    exclude = ("todo_url_prefix",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """API tokens, as digests: nothing here authenticates. Deleting one revokes it at once on
    every replica (todos/cache.py); a new token comes from a login or `create_api_user`, since
    its key can be shown only to whoever asked for it."""

    list_display = ("id", "user", "name", "created", "expires_at")
    list_filter = (("expires_at", DateFieldListFilter),)
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    search_fields = ("user__username",)
    ordering = ("-id",)
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
