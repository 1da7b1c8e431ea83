"""JSON API: thin doors onto the service (see DESIGN.md "JSON API").

Session auth and CSRF, like the pages. Every answer is JSON; every error is
`{"error": code, "message": text, ...}` with the status code the contract
names, and a refused request changes nothing.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.csrf import ensure_csrf_cookie

from . import errors, services
from .errors import ServiceError
from .models import Execution, Source, Status

API_PREFIX = "/api/"
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
START_FIELDS = ("cmd", "params", "profile", "strategy", "timeout", "force_after")
INTERRUPT_FIELDS = ("force", "reason")
#: A JSON number of seconds (the service checks its range).
SECONDS = (int, float)
_TYPE_NAMES = {str: "a string", bool: "true or false", SECONDS: "a number of seconds"}

View = Callable[..., HttpResponse]


class ApiError(ServiceError):
    """A refusal by the API itself (method, login, body): an HTTP status of
    its own; the service's refusals carry theirs."""

    def __init__(
        self,
        http_status: int,
        code: str,
        message: str,
        /,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message, **extra)
        self.http_status = http_status
        self.code = code
        self.headers = headers


def error_response(error: ServiceError) -> JsonResponse:
    """The one place an error becomes an answer: `{"error": code, ...}`."""
    return JsonResponse(
        error.as_json(),
        status=error.http_status,
        headers=getattr(error, "headers", None),
    )


def api_view(*methods: str) -> Callable[[View], View]:
    """Make a view an API door: only `methods`, only for a logged-in user
    (no redirect to a login page), and the service's errors as JSON."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(
                        405,
                        "method_not_allowed",
                        f"Use {' or '.join(methods)} here.",
                        headers={"Allow": ", ".join(methods)},
                    )
                if not request.user.is_authenticated:
                    raise ApiError(403, "not_authenticated", "Log in first.")
                return view(request, *args, **kwargs)
            except errors.REFUSALS as error:
                return error_response(errors.of(error))

        # A script that logs in with a session can GET first to learn the
        # CSRF token its POSTs need.
        return ensure_csrf_cookie(wrapper)

    return decorate


@api_view("GET", "POST")
def executions(request: HttpRequest) -> HttpResponse:
    """List executions (GET, newest first) or start one (POST)."""
    if request.method == "POST":
        return _start(request)
    status = request.GET.get("status") or None
    if status is not None and status not in Status.values:
        raise ApiError(
            400,
            "invalid_status",
            f"Unknown status {status!r}.",
            allowed=list(Status.values),
        )
    limit = _limit(request.GET.get("limit"))
    queryset = services.list_executions(user=request.user, status=status)
    return JsonResponse({"executions": Execution.snapshots(queryset[:limit])})


def _start(request: HttpRequest) -> HttpResponse:
    # The service checks too; asking first answers a forbidden user 403
    # whatever the body holds.
    services.check(request.user, "add")
    data = _json_body(request, empty_allowed=False)
    _check_fields(
        data,
        START_FIELDS,
        required={"cmd": str},
        optional={
            "profile": str,
            "strategy": str,
            "timeout": SECONDS,
            "force_after": SECONDS,
        },
    )
    result = services.start_execution(
        data["cmd"],
        data.get("params"),
        profile=data.get("profile"),
        strategy=data.get("strategy"),
        timeout=data.get("timeout"),
        force_after=data.get("force_after"),
        user=request.user,
        source=Source.API,
    )
    if not result.created:
        return JsonResponse(result.execution.snapshot())
    return JsonResponse(
        result.execution.snapshot(),
        status=201,
        headers={
            "Location": reverse("executions:api-detail", args=[result.execution.id])
        },
    )


@api_view("GET")
def execution(request: HttpRequest, execution_id: str) -> HttpResponse:
    """One execution's snapshot."""
    return JsonResponse(
        services.get_execution(execution_id, user=request.user).snapshot()
    )


@api_view("GET")
def logs(request: HttpRequest, execution_id: str) -> HttpResponse:
    """A page of an execution's log: `?after=` a seq (0: from the start),
    `?step=` one step's lines only; `next` is the `after` of the next page."""
    page = services.read_log(
        execution_id,
        user=request.user,
        step=request.GET.get("step") or None,
        after=request.GET.get("after"),
    )
    return JsonResponse(page.as_json())


@api_view("POST")
def interrupt(request: HttpRequest, execution_id: str) -> HttpResponse:
    """Ask an execution to stop; 202 because it stops at its next safe point."""
    services.check(request.user, "interrupt")
    data = _json_body(request, empty_allowed=True)
    _check_fields(data, INTERRUPT_FIELDS, optional={"force": bool, "reason": str})
    result = services.request_interrupt(
        execution_id,
        user=request.user,
        source=Source.API,
        force=data.get("force") or False,
        reason=data.get("reason") or "",
    )
    return JsonResponse(result.execution.snapshot(), status=202)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: a JSON error for the API, Django's page elsewhere."""
    if request.path_info.startswith(API_PREFIX):
        return error_response(
            ApiError(
                403,
                "csrf_failed",
                "CSRF check failed: send the csrftoken cookie's value in the "
                "X-CSRFToken header.",
                reason=reason,
            )
        )
    return django_csrf_failure(request, reason=reason)


def _json_body(request: HttpRequest, *, empty_allowed: bool) -> dict[str, Any]:
    try:
        body = request.body
    except RequestDataTooBig:
        raise ApiError(
            413,
            "too_large",
            f"The request body is over {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes.",
        ) from None
    if empty_allowed and not body.strip():
        return {}
    try:
        data = json.loads(body)
        # An unpaired surrogate escape ("\ud800") parses but is not text: no
        # database stores it (I-JSON, RFC 7493, forbids it). Encoding finds it.
        json.dumps(data, ensure_ascii=False).encode()
    except (ValueError, RecursionError):
        # ValueError covers undecodable bytes as well as bad syntax;
        # RecursionError is what absurdly deep nesting raises.
        raise ApiError(400, "bad_json", "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "The request body must be a JSON object.")
    return data


def _check_fields(
    data: dict[str, Any],
    allowed: tuple[str, ...],
    *,
    required: dict[str, type] | None = None,
    optional: dict[str, type] | None = None,
) -> None:
    """Refuse unknown fields and fields of the wrong JSON type; null is the
    same as leaving an optional field out. (`params` is the command's to
    check.)"""
    errors = {
        str(name): f"unknown field; expected one of: {', '.join(allowed)}"
        for name in data
        if name not in allowed
    }
    for name in required or {}:
        if data.get(name) is None:
            errors[name] = "a value is required"
    for name, kind in {**(required or {}), **(optional or {})}.items():
        value = data.get(name)
        # JSON's true and false are Python ints: never a number here.
        if value is not None and (
            not isinstance(value, kind) or (kind is SECONDS and isinstance(value, bool))
        ):
            errors[name] = f"must be {_TYPE_NAMES[kind]}"
    if errors:
        raise services.ParamsError(errors)


def _limit(raw: str | None) -> int:
    if not raw:
        return DEFAULT_LIMIT
    # The length first: int() refuses over 4300 digits with a ValueError.
    if (
        len(raw) <= len(str(MAX_LIMIT))
        and raw.isascii()
        and raw.isdigit()
        and 1 <= int(raw) <= MAX_LIMIT
    ):
        return int(raw)
    raise services.ParamsError(
        {"limit": f"must be a whole number from 1 to {MAX_LIMIT}"}
    )


def not_found(request: HttpRequest, path: str = "") -> JsonResponse:
    """Any other URL under /api/: JSON, like every API answer."""
    return JsonResponse(
        {"error": "not_found", "message": f"No API endpoint at {request.path}."},
        status=404,
    )
