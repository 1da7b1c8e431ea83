"""The app's templates: its pages render on their own in a project with no
templates of its own, and a project's templates/executions/base.html puts
them in the project's layout, as peace_site's does."""

from __future__ import annotations

import copy

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import include, path

from executions import services
from executions.models import Source

pytestmark = pytest.mark.django_db

# A project's URLs as `django-admin startproject` plus the app make them: no
# login or logout views of its own.
urlpatterns = [path("", include("executions.urls"))]


def no_project_templates() -> list[dict]:
    templates = copy.deepcopy(settings.TEMPLATES)
    templates[0]["DIRS"] = []
    return templates


def bare_project():
    """Settings of a project with no templates directory and no auth URLs."""
    return override_settings(TEMPLATES=no_project_templates(), ROOT_URLCONF=__name__)


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def pages() -> list[str]:
    execution = services.start_execution(
        "demo.steps", {}, source=Source.CLI, dispatch=False
    ).execution
    return ["/executions/", f"/executions/{execution.id}/"]


def test_pages_use_the_sites_layout_through_its_override(make_user):
    client = logged_in(make_user("view", "add", "interrupt", username="alice"))

    for page in pages():
        response = client.get(page)

        names = [template.name for template in response.templates]
        assert response.status_code == 200
        assert names[1:3] == ["executions/base.html", "base.html"]
        assert '<a class="brand" href="/executions/">peace_site</a>' in (
            response.content.decode()
        )


def test_pages_render_standalone_in_a_project_without_templates(make_user):
    client = logged_in(make_user("view", "add", "interrupt", username="alice"))

    with bare_project():
        for page in pages():
            response = client.get(page)

            content = response.content.decode()
            names = [template.name for template in response.templates]
            assert response.status_code == 200
            assert "base.html" not in names
            assert '<a class="brand" href="/executions/">Executions</a>' in content
            assert '<span class="username">alice</span>' in content
            # What executions.js needs from the layout.
            assert 'id="connection"' in content
            assert 'id="messages"' in content
            assert "/static/executions/executions.js" in content
            assert "/static/executions/executions.css" in content


def test_standalone_base_offers_log_out_where_the_project_has_it(make_user):
    client = logged_in(make_user("view"))

    with bare_project():
        without = client.get("/executions/").content.decode()
    with override_settings(TEMPLATES=no_project_templates()):
        with_logout = client.get("/executions/").content.decode()

    assert "Log out" not in without
    assert 'action="/accounts/logout/"' in with_logout
