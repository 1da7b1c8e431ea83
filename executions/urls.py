from django.urls import path, re_path

from . import api, views

app_name = "executions"

urlpatterns = [
    # Pages (login required).
    path("executions/", views.execution_list, name="list"),
    path("executions/new/", views.execution_new, name="new"),
    path(
        "executions/interrupt/",
        views.execution_bulk_interrupt,
        name="bulk-interrupt",
    ),
    path("executions/<str:execution_id>/", views.execution_detail, name="detail"),
    path(
        "executions/<str:execution_id>/interrupt/",
        views.execution_interrupt,
        name="interrupt",
    ),
    path(
        "executions/<str:execution_id>/resume/",
        views.execution_resume,
        name="resume",
    ),
    # JSON API (session auth + CSRF).
    path("api/executions/", api.executions, name="api-list"),
    path("api/executions/<str:execution_id>/", api.execution, name="api-detail"),
    path(
        "api/executions/<str:execution_id>/logs/",
        api.logs,
        name="api-logs",
    ),
    path(
        "api/executions/<str:execution_id>/interrupt/",
        api.interrupt,
        name="api-interrupt",
    ),
    re_path(r"^api/(?P<path>.*)$", api.not_found),
]
