"""Routes of the REST API, the OpenAPI schema and its docs page."""

from __future__ import annotations

from django.urls import URLPattern, path
from drf_spectacular.views import SpectacularSwaggerView

from tasks_app.api import schema  # also registers the schema extensions
from tasks_app.api.views import admin, auth, limits, schedules, tasks, workflows

urlpatterns: list[URLPattern] = [
    path("api/v1/tasks", tasks.TaskListView.as_view(), name="tasks"),
    path("api/v1/tasks/batch", tasks.TaskBatchView.as_view(), name="tasks-batch"),
    path("api/v1/tasks/<str:task_id>", tasks.TaskDetailView.as_view(), name="task"),
    path("api/v1/workflows", workflows.WorkflowListView.as_view(), name="workflows"),
    path("api/v1/workflows/<str:workflow_id>", workflows.WorkflowDetailView.as_view(),
         name="workflow"),
    path("api/v1/auth/token", auth.TokenView.as_view(), name="token"),
    path("api/v1/auth/token/refresh", auth.TokenRefreshingView.as_view(), name="token-refresh"),
    path("api/v1/auth/token/revoke", auth.TokenRevokeView.as_view(), name="token-revoke"),
    path("admin/health", admin.HealthView.as_view(), name="health"),
    path("admin/workers", admin.WorkerListView.as_view(), name="workers"),
    path("admin/workers/<str:worker_id>", admin.WorkerDetailView.as_view(), name="worker"),
    path("admin/workers/<str:worker_id>/pause", admin.WorkerPauseView.as_view(),
         name="worker-pause"),
    path("admin/workers/<str:worker_id>/resume", admin.WorkerResumeView.as_view(),
         name="worker-resume"),
    path("admin/queues", admin.QueueListView.as_view(), name="queues"),
    path("admin/queues/<str:priority>", admin.QueueDetailView.as_view(), name="queue"),
    path("admin/queues/<str:priority>/pause", admin.QueuePauseView.as_view(),
         name="queue-pause"),
    path("admin/queues/<str:priority>/resume", admin.QueueResumeView.as_view(),
         name="queue-resume"),
    path("admin/named-queues", admin.NamedQueueListView.as_view(), name="named-queues"),
    path("admin/named-queues/<str:name>/pause", admin.NamedQueuePauseView.as_view(),
         name="named-queue-pause"),
    path("admin/named-queues/<str:name>/resume", admin.NamedQueueResumeView.as_view(),
         name="named-queue-resume"),
    path("admin/dlq", admin.DLQView.as_view(), name="dlq"),
    path("admin/dlq/retry", admin.DLQRetryView.as_view(), name="dlq-retry"),
    path("admin/tasks/<str:task_id>/retry", admin.TaskRetryView.as_view(), name="task-retry"),
    path("admin/schedules", schedules.ScheduleListView.as_view(), name="schedules"),
    path("admin/schedules/<str:name>", schedules.ScheduleDetailView.as_view(), name="schedule"),
    path("admin/schedules/<str:name>/pause", schedules.SchedulePauseView.as_view(),
         name="schedule-pause"),
    path("admin/schedules/<str:name>/resume", schedules.ScheduleResumeView.as_view(),
         name="schedule-resume"),
    path("admin/schedules/<str:name>/trigger", schedules.ScheduleTriggerView.as_view(),
         name="schedule-trigger"),
    path("admin/types", limits.TypeLimitListView.as_view(), name="type-limits"),
    path("admin/types/<str:task_type>/limits", limits.TypeLimitView.as_view(),
         name="type-limit"),
    path("api/schema/", schema.SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="taskqueue:schema"), name="docs"),
]
