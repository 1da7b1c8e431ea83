"""The HTTP side of the app's ASGI application (executions/asgi.py): a sync
view's request is one thread hop, middleware and view together; an async
view's stays on the event loop; Django's answers (404, 500) are as its own
handler gives them; request threads, and their database connections, are
kept for the next request as CONN_MAX_AGE allows."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from asgiref.sync import SyncToAsync
from channels.testing import HttpCommunicator
from django.core.handlers.asgi import ASGIHandler
from django.db import connection, connections
from django.http import HttpResponse
from django.test import override_settings
from django.urls import include, path
from django.utils.deprecation import MiddlewareMixin

from executions.asgi import OneHopASGIHandler, get_asgi_application
from peace_site.asgi import application

#: (what ran, on which thread), in the order it ran.
seen: list[tuple[str, int]] = []


class Recording(MiddlewareMixin):
    def process_request(self, request):
        seen.append(("request", threading.get_ident()))

    def process_response(self, request, response):
        seen.append(("response", threading.get_ident()))
        response["X-Recorded"] = "yes"
        return response


def sync_view(request):
    seen.append(("view", threading.get_ident()))
    return HttpResponse("sync")


async def async_view(request):
    seen.append(("view", threading.get_ident()))
    return HttpResponse("async")


def broken_view(request):
    raise RuntimeError("boom")


#: The database connection each request of db_view used, in order.
used: list = []
#: What two requests to together_view wait for: each other.
together = threading.Barrier(2, timeout=10)


def db_view(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    used.append((threading.get_ident(), connection.connection))
    return HttpResponse("db")


def together_view(request):
    together.wait()  # both requests in their views at once, or it breaks
    return HttpResponse("together")


urlpatterns = [
    path("sync/", sync_view),
    path("async/", async_view),
    path("broken/", broken_view),
    path("db/", db_view),
    path("together/", together_view),
    path("", include("peace_site.urls")),  # what the error pages link to
]


@pytest.fixture
def hops(monkeypatch) -> list:
    """What each `sync_to_async` call made while the fixture lasts ran."""
    called = []
    original = SyncToAsync.__call__

    def counted(self, *args, **kwargs):
        called.append(self.func)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", counted)
    return called


@pytest.fixture
def handler_class():
    """Handlers built under this module's URLs and two recording middlewares."""
    seen.clear()
    used.clear()
    with override_settings(
        ROOT_URLCONF=__name__, MIDDLEWARE=[f"{__name__}.Recording"] * 2
    ):
        yield lambda cls=OneHopASGIHandler: cls()


async def get(handler, url: str) -> dict:
    return await HttpCommunicator(handler, "GET", url).get_response()


def hopped_alone(hops: list) -> list:
    """The hops made for a middleware's method or a view by itself."""
    return [
        func
        for func in hops
        if isinstance(getattr(func, "__self__", None), Recording)
        or func in (sync_view, broken_view)
    ]


async def test_a_sync_views_request_is_one_hop_for_its_middleware_and_view(
    handler_class, hops
):
    response = await get(handler_class(), "/sync/")

    assert (response["status"], response["body"]) == (200, b"sync")
    assert (b"X-Recorded", b"yes") in response["headers"]
    assert [what for what, _ in seen] == ["request"] * 2 + ["view"] + ["response"] * 2
    assert len({thread for _, thread in seen}) == 1
    assert seen[0][1] != threading.get_ident()  # not the event loop's
    assert hopped_alone(hops) == []


async def test_djangos_own_handler_hops_for_each_middleware(handler_class, hops):
    """What the handler saves: the same request through Django's."""
    response = await get(handler_class(ASGIHandler), "/sync/")

    assert response["status"] == 200
    assert len(hopped_alone(hops)) == 2 * 2 + 1  # each middleware twice, the view


async def test_an_async_view_runs_on_the_event_loop(handler_class):
    response = await get(handler_class(), "/async/")

    assert (response["status"], response["body"]) == (200, b"async")
    assert (b"X-Recorded", b"yes") in response["headers"]
    assert ("view", threading.get_ident()) in seen


async def test_an_unknown_path_is_djangos_404_through_the_middleware(
    handler_class, hops
):
    response = await get(handler_class(), "/nowhere/")

    assert response["status"] == 404
    assert (b"X-Recorded", b"yes") in response["headers"]
    assert hopped_alone(hops) == []


async def test_a_view_that_raises_is_djangos_500(handler_class, caplog):
    response = await get(handler_class(), "/broken/")

    assert response["status"] == 500
    assert (b"X-Recorded", b"yes") in response["headers"]
    assert "Internal Server Error: /broken/" in caplog.text


def test_the_apps_application_serves_http_with_it():
    assert isinstance(application.app.application_mapping["http"], OneHopASGIHandler)


def test_a_projects_own_http_application_is_kept():
    own = ASGIHandler()

    assert get_asgi_application(own).app.application_mapping["http"] is own


async def kept(handler: OneHopASGIHandler, count: int) -> None:
    """Wait until `count` request threads are kept (a thread is kept once
    it is free, just after its request is answered)."""
    for _ in range(500):
        if len(handler._idle) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(handler._idle)} threads kept, not {count}")


@pytest.fixture
def persistent(monkeypatch):
    """CONN_MAX_AGE as the project sets it (the tests' settings say 0)."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 60)


async def one_after_another(handler: OneHopASGIHandler, url: str, times: int):
    """GET `url` `times` times, each once the one before has left its thread
    to be kept; then end the handler's threads."""
    try:
        for _ in range(times):
            assert (await get(handler, url))["status"] == 200
            await kept(handler, 1)
    finally:
        handler.close()


def closed(raw) -> bool:
    """Whether a driver's connection is closed (asked only where no other
    thread may be using it: sqlite3 does not survive a close meanwhile)."""
    if hasattr(raw, "closed"):  # psycopg
        return bool(raw.closed)
    try:  # sqlite3 has no flag: a closed connection refuses
        raw.execute("SELECT 1")
    except sqlite3.ProgrammingError as error:
        return "closed" in str(error)
    return False


@pytest.mark.django_db(transaction=True)
async def test_requests_one_after_another_share_a_thread_and_its_connection(
    handler_class, persistent
):
    await one_after_another(handler_class(), "/db/", 3)

    threads, raws = zip(*used, strict=True)
    assert len(set(threads)) == 1
    assert raws[0] is raws[1] is raws[2]  # CONN_MAX_AGE is 60: kept


@pytest.mark.django_db(transaction=True)
async def test_conn_max_age_0_closes_the_connection_after_each_request(
    handler_class, monkeypatch
):
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
    await one_after_another(handler_class(), "/db/", 2)

    (first_thread, first), (second_thread, second) = used
    assert first_thread == second_thread
    assert first is not second
    assert closed(first)


async def test_requests_at_once_each_have_a_thread(handler_class):
    handler = handler_class()
    try:
        responses = await asyncio.wait_for(
            asyncio.gather(get(handler, "/together/"), get(handler, "/together/")),
            15,
        )
        await kept(handler, 2)
    finally:
        handler.close()

    assert [response["status"] for response in responses] == [200, 200]


@pytest.mark.django_db(transaction=True)
async def test_a_thread_past_the_idle_limit_ends_and_closes_its_connection(
    handler_class, persistent
):
    handler = handler_class()
    handler.IDLE_THREADS = 0

    assert (await get(handler, "/db/"))["status"] == 200
    [(thread, raw)] = used
    for _ in range(500):
        if not any(alive.ident == thread for alive in threading.enumerate()):
            break
        await asyncio.sleep(0.01)

    assert closed(raw)  # asked only once its thread is gone: never at once
    assert handler._idle == []


@pytest.mark.django_db(transaction=True)
async def test_close_ends_the_kept_threads_and_closes_their_connections(
    handler_class, persistent
):
    handler = handler_class()
    assert (await get(handler, "/db/"))["status"] == 200
    await kept(handler, 1)
    [(_, raw)] = used

    handler.close()

    assert closed(raw)
    assert handler._idle == []
