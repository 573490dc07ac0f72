"""Reads of todos through the API: one owner's list, or one of their todos."""

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from todos.models import Todo


def todo_list(*, owner: AbstractBaseUser | int) -> QuerySet[Todo]:
    """All todos of `owner` (a user or a user's id), unordered: the caller (pagination)
    decides the order."""
    return Todo.objects.filter(owner=owner)


def todo_get(*, owner: AbstractBaseUser | int, todo_id: int) -> Todo:
    """The todo `todo_id` of `owner`; raises `Todo.DoesNotExist` for a missing or foreign id."""
    return Todo.objects.get(owner=owner, pk=todo_id)
