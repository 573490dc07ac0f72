"""Query-string filters of the todo list: `?completed=` and `?search=`."""

import django_filters

from todos.models import Todo

# Longer than any phrase worth searching for; it bounds the ILIKE pattern Postgres matches
# against every title of the list.
SEARCH_MAX_LENGTH = 200


class TodoFilter(django_filters.FilterSet):
    # A choice, not django-filter's BooleanFilter: that one silently ignores `?completed=maybe`
    # and returns everything; here it is a 400 naming the parameter.
    completed = django_filters.TypedChoiceFilter(
        choices=(("true", "true"), ("false", "false")),
        coerce=lambda value: value == "true",
        help_text="true or false",
    )
    search = django_filters.CharFilter(
        field_name="title",
        lookup_expr="icontains",
        max_length=SEARCH_MAX_LENGTH,
        help_text="part of the title",
    )

    class Meta:
        model = Todo
        fields = ("completed", "search")
