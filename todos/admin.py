"""Django admin for operators: find, filter and bulk-edit todos at any table size."""

import json

from django.contrib import admin, messages
from django.contrib.admin.filters import DateFieldListFilter
from django.core.paginator import Paginator
from django.db import OperationalError, connections, transaction
from django.utils.functional import cached_property

from todos import services
from todos.cache import todos_changed
from todos.models import Export, OutboxMessage, Todo


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

    # The admin's own edit, add and delete paths write rows too: their owners' cached lists must
    # move to a new generation like after any API write.
    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            if change and "owner" in form.changed_data:
                todos_changed(owner_ids=[form.initial["owner"]])
            super().save_model(request, obj, form, change)
            todos_changed(owner_ids=[obj.owner_id])

    def delete_model(self, request, obj):
        with transaction.atomic():
            super().delete_model(request, obj)
            todos_changed(owner_ids=[obj.owner_id])

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            todos_changed(owner_ids=queryset.values_list("owner_id", flat=True).distinct())
            super().delete_queryset(request, queryset)

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
