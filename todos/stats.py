"""The statistics API: `GET /api/stats`, the caller's completion counts.

The counts are recomputed by a task after each completion or reopening (the `todo.completed`
hook, tasks/stats.py); `computed_at` says how fresh they are.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from todos import selectors
from todos.models import UserStats


class StatsSerializer(serializers.ModelSerializer):
    class Meta:
        model = UserStats
        fields = ("total", "completed", "computed_at")
        read_only_fields = fields


class StatsView(APIView):
    @extend_schema(summary="The caller's completion statistics", responses={200: StatsSerializer})
    def get(self, request):
        return Response(StatsSerializer(selectors.user_stats_get(owner=request.user)).data)
