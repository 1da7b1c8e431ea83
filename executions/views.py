"""Pages: thin doors onto the service.

Each view asks `executions.services` and renders what it returns. The service
checks permissions (its `PermissionDenied` becomes Django's 403 page); an
unknown or malformed ID becomes a 404. Everything shown comes from
`Execution.snapshot()`, the shape the websockets send, so a reloaded tab or a
shared URL shows what a live page shows.
"""

from __future__ import annotations

import time
from collections import defaultdict

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import display, errors, listing, services
from .api import error_response
from .forms import StartForm
from .models import Execution, Source

#: Where the session keeps the command last started from the form.
LAST_CMD = "executions.last_cmd"
FORCE_VALUES = {"": False, "0": False, "false": False, "1": True, "true": True}


@login_required
@require_http_methods(["GET", "POST"])
def execution_list(request: HttpRequest) -> HttpResponse:
    """The runs table: filters, search, sort, keyset pages, counts per state.
    A POST starts a run, as the start page's form does (older pages and
    scripts post here)."""
    if request.method == "POST":
        return execution_new(request)
    query = listing.read(request.GET)
    # Taken before the query: the list socket's first snapshot tells the page
    # whether anything changed between this render and its joining.
    as_of = timezone.now()
    page = listing.page(services.list_executions(user=request.user), query)
    context = {
        "page": page,
        "as_of": as_of,
        "rows": Execution.snapshots(page.rows),
        "sorts": {key: label for key, (label, *_) in listing.SORTS.items()},
        "can_start": services.can(request.user, "add"),
        "can_interrupt": services.can(request.user, "interrupt"),
    }
    return render(request, "executions/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def execution_new(request: HttpRequest) -> HttpResponse:
    """The start form; `?again=<id>` fills it in from an earlier run, else it
    shows the command chosen last."""
    services.check(request.user, "add")
    if request.method == "POST":
        form = StartForm(request.POST)
        try:
            started = services.start_execution(
                **form.start_args(), user=request.user, source=Source.WEB
            )
        except errors.REFUSALS as exc:
            form.add_errors(_field_errors(_refusal(exc)))
        else:
            request.session[LAST_CMD] = form.cmd
            if not started.created:
                messages.info(
                    request,
                    f"Profile “{started.execution.profile}” is busy: "
                    "this is its active execution.",
                )
            return redirect(started.execution)
    else:
        form = StartForm(_initial(request))
    status = 400 if form.errors or form.non_field_errors else 200
    context = {"form": form, "strategies": display.STRATEGIES}
    return render(request, "executions/new.html", context, status=status)


@login_required
@require_POST
def execution_bulk_interrupt(request: HttpRequest) -> HttpResponse:
    """The list's "Interrupt selected" and "Force selected": the service for
    each run, then one truthful summary."""
    force = request.POST.get("force") == "1"
    reason = request.POST.get("reason", "").strip()
    results: dict[str, list[str]] = defaultdict(list)
    for execution_id in request.POST.getlist("ids"):
        try:
            result = services.request_interrupt(
                execution_id,
                user=request.user,
                source=Source.WEB,
                force=force,
                reason=reason,
            ).result
        except errors.REFUSALS as exc:
            error = errors.of(exc)
            if isinstance(error, errors.Forbidden):
                raise error from None
            key = "finished" if isinstance(error, errors.NotRunning) else "refused"
            results[key].append(execution_id[:8])
            if key == "refused":
                messages.error(request, f"Not interrupted {execution_id[:8]}: {error}")
            continue
        results[result.value].append(execution_id[:8])
    text = display.bulk_summary(results, force=force)
    if text:
        messages.info(request, text)
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        back = ""
    return redirect(back or "executions:list")


@login_required
@require_GET
def execution_detail(request: HttpRequest, execution_id: str) -> HttpResponse:
    """One execution: its steps, status, outcome and the Interrupt button."""
    return _detail(request, _get_or_404(execution_id, request.user))


@login_required
@require_POST
def execution_interrupt(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The Interrupt button's form: works without JavaScript. The page's
    script submits the same form asking for JSON, so a click is recorded as
    the web page's either way."""
    wants_json = request.headers.get("Accept") == "application/json"
    force = FORCE_VALUES.get(request.POST.get("force", "").strip().lower())
    if force is None:
        services.check(request.user, "interrupt")
        messages.error(request, "Force must be 0 or 1. Nothing changed.")
        return _detail(request, _get_or_404(execution_id, request.user), status=400)
    try:
        interrupted = services.request_interrupt(
            execution_id,
            user=request.user,
            source=Source.WEB,
            force=force,
            reason=request.POST.get("reason", "").strip(),
        )
    except errors.REFUSALS as exc:
        error = _refusal(exc)
        if wants_json:
            return error_response(error)
        if isinstance(error, errors.NotRunning):
            messages.info(
                request,
                f"Not running: this execution has finished ({error.status}). "
                "Nothing changed.",
            )
            return redirect(error.execution)
        messages.error(request, f"Not interrupted: {error}. Nothing changed.")
        return _detail(request, _get_or_404(execution_id, request.user), status=400)
    if wants_json:
        return JsonResponse(interrupted.execution.snapshot(), status=202)
    messages.success(request, interrupted.result.label)
    return redirect(interrupted.execution)


@login_required
@require_POST
def execution_resume(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The Resume button: a new run that skips the steps that succeeded."""
    try:
        started = services.resume_execution(
            execution_id, user=request.user, source=Source.WEB
        )
    except errors.REFUSALS as exc:
        error = _refusal(exc)
        if isinstance(error, errors.NotResumable):
            messages.info(request, f"Not resumed: {error}")
            return redirect(error.execution)
        messages.error(request, f"Not resumed: {error}")
        return redirect("executions:detail", execution_id)
    execution = started.execution
    if started.created:
        messages.success(request, "Resumed: the steps that succeeded are skipped.")
    else:
        messages.info(
            request, f"Profile {execution.profile} is busy: this is its active run."
        )
    return redirect(execution)


def _refusal(exc: Exception) -> errors.ServiceError:
    """The pages' one error mapping: a refusal the page can explain, or
    Django's 403 and 404 pages for a forbidden action and an unknown ID."""
    error = errors.of(exc)
    if isinstance(error, errors.Forbidden):
        raise error
    if isinstance(error, errors.UnknownExecution):
        raise Http404("No such execution.") from None
    return error


def _field_errors(error: errors.ServiceError) -> dict[str, str]:
    if isinstance(error, errors.InvalidParams):
        return error.fields
    if isinstance(error, errors.UnknownCommand):
        return {"cmd": str(error)}
    return {"__all__": str(error)}


def _get_or_404(execution_id: str, user) -> Execution:
    try:
        return services.get_execution(execution_id, user=user)
    except errors.REFUSALS as exc:
        raise _refusal(exc) from None


def _detail(
    request: HttpRequest, execution: Execution, *, status: int = 200
) -> HttpResponse:
    snapshot = execution.snapshot()
    context = {
        "execution": snapshot,
        "titles": {step["id"]: step["title"] for step in snapshot["steps"]},
        "states": {step["id"]: step["status"] for step in snapshot["steps"]},
        "can_interrupt": services.can(request.user, "interrupt")
        and not execution.is_finished,
        "can_start": services.can(request.user, "add"),
        "resumable": execution.status in services.RESUMABLE,
        "server_now": int(time.time() * 1000),
    }
    return render(request, "executions/detail.html", context, status=status)


def _initial(request: HttpRequest) -> QueryDict:
    """What the start form shows first: an earlier run's command, params,
    profile and strategy (Run again), or the command chosen last."""
    initial = QueryDict(mutable=True)
    again = request.GET.get("again")
    if again:
        snapshot = _get_or_404(again, request.user).snapshot()
        initial["cmd"] = snapshot["cmd"]
        for name, value in (snapshot["params"] or {}).items():
            initial[f"{snapshot['cmd']}.{name}"] = _as_input(value)
        kind, _, n = (snapshot["strategy"] or "").partition(":")
        initial.update({"profile": snapshot["profile"] or "", "strategy": kind})
        if n:
            initial["strategy_n"] = n
        for name in ("timeout", "force_after"):
            if snapshot[name] is not None:
                initial[name] = f"{snapshot[name]:g}"
    else:
        initial["cmd"] = request.GET.get("cmd") or request.session.get(LAST_CMD, "")
        if not initial["cmd"]:
            return None
    return initial


def _as_input(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
