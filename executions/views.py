"""Pages: thin doors onto the service.

Each view asks `executions.services` and renders what it returns. The service
checks permissions (its `PermissionDenied` becomes Django's 403 page); an
unknown or malformed ID becomes a 404. Everything shown comes from
`Execution.snapshot()`, the shape the websockets send, so a reloaded tab or a
shared URL shows what a live page shows.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from . import errors, services
from .api import error_response
from .forms import StartForm
from .models import Execution, Source

#: The list page shows this many of the newest executions.
LIST_LIMIT = 100

SOURCE_LABELS = dict(Source.choices)
FORCE_VALUES = {"": False, "0": False, "false": False, "1": True, "true": True}


@login_required
@require_http_methods(["GET", "POST"])
def execution_list(request: HttpRequest) -> HttpResponse:
    """The executions, newest first, and the form that starts one."""
    executions = services.list_executions(user=request.user)[:LIST_LIMIT]
    form = StartForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        try:
            started = services.start_execution(
                **form.start_args(), user=request.user, source=Source.WEB
            )
        except errors.REFUSALS as exc:
            form.add_errors(_field_errors(_refusal(exc)))
        else:
            if not started.created:
                messages.info(
                    request,
                    f"Profile “{started.execution.profile}” is busy: "
                    "this is its active execution.",
                )
            return redirect(started.execution)
    context = {
        "rows": [_row(execution.snapshot()) for execution in executions],
        "form": form if services.can(request.user, "add") else None,
        "sources": SOURCE_LABELS,
    }
    status = 400 if form.errors or form.non_field_errors else 200
    return render(request, "executions/list.html", context, status=status)


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
        "display": _row(snapshot),
        "stages": _stages([_step(step) for step in snapshot["steps"]]),
        "outcome": _outcome(snapshot),
        "interrupt": _interrupt(snapshot),
        "can_interrupt": services.can(request.user, "interrupt")
        and not execution.is_finished,
        "can_resume": services.can(request.user, "add"),
        "resumable": execution.status in services.RESUMABLE,
        "sources": SOURCE_LABELS,
        "server_now": int(time.time() * 1000),
    }
    return render(request, "executions/detail.html", context, status=status)


# -- display: the same text the page's script renders from a snapshot ----------


def timestamp(iso: str | None) -> str:
    """`2025-01-31 12:00:05` (UTC) from the snapshot's ISO 8601 text."""
    return iso[:19].replace("T", " ") if iso else ""


def duration(seconds: float) -> str:
    """`0.6s`, `42s`, `1m 05s`, `2h 03m`: tenths only while they matter."""
    if seconds < 10:
        return f"{math.floor(max(0.0, seconds) * 10) / 10:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def elapsed(started: str | None, finished: str | None) -> str:
    if not started:
        return ""
    end = _parse(finished) if finished else datetime.now().astimezone()
    return duration((end - _parse(started)).total_seconds())


def progress_text(progress: dict) -> str:
    done, total = progress["done"], progress["total"]
    if progress["unit"] == "bytes":
        shown = filesizeformat(done)
        return f"{shown} / {filesizeformat(total)}" if total is not None else shown
    return f"{done} / {total} steps" if total is not None else f"{done} steps"


def progress_bar(step: dict) -> dict[str, int] | None:
    """`<progress>` value and max; None for an indeterminate bar (a running
    step that does not know its total yet)."""
    done, total = step["progress"]["done"], step["progress"]["total"]
    if total is None:
        if step["status"] in ("running", "stalled"):
            return None
        return {"value": 0, "max": 1}
    if total <= 0:
        return {"value": 1 if step["status"] == "succeeded" else 0, "max": 1}
    return {"value": min(max(done, 0), total), "max": total}


def source_label(source: str) -> str:
    return SOURCE_LABELS.get(source, source)


def _parse(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _row(snapshot: dict) -> dict:
    return {
        **snapshot,
        "created": timestamp(snapshot["created_at"]),
        "started": timestamp(snapshot["started_at"]),
        "finished": timestamp(snapshot["finished_at"]),
        "elapsed": elapsed(snapshot["started_at"], snapshot["finished_at"]),
        "source_label": source_label(snapshot["created_from"]),
    }


def _step(step: dict) -> dict:
    return {
        **step,
        "after": step.get("after", []),
        "progress_text": progress_text(step["progress"]),
        "bar": progress_bar(step),
        "elapsed": elapsed(step["started_at"], step["finished_at"]),
    }


def _outcome(snapshot: dict) -> dict | None:
    outcome = snapshot["outcome"]
    if outcome is None:
        return None
    titles = {step["id"]: step["title"] for step in snapshot["steps"]}
    return {
        "kind": outcome["kind"],
        "processed": [(i, titles.get(i, i)) for i in outcome["steps_processed"]],
        "not_processed": [
            (i, titles.get(i, i)) for i in outcome["steps_not_processed"]
        ],
        "errors": sorted(outcome["errors"].items()),
    }


def _interrupt(snapshot: dict) -> dict | None:
    interrupt = snapshot["interrupt"]
    if interrupt is None:
        return None
    return {
        **interrupt,
        "requested": timestamp(interrupt["requested_at"]),
        "source_label": source_label(interrupt["source"]),
    }


def _stages(steps: list[dict]) -> list[list[dict]]:
    """Steps grouped by depth in the graph: a stage's steps may run side by
    side (demo.deploy's parallel branches), each after the stages above."""
    ids = {step["id"] for step in steps}
    waiting = {step["id"]: 0 for step in steps}
    children: dict[str, list[str]] = defaultdict(list)
    for step in steps:
        for dependency in step["after"]:
            if dependency in ids:
                waiting[step["id"]] += 1
                children[dependency].append(step["id"])
    depth = {step_id: 0 for step_id, count in waiting.items() if count == 0}
    ready = list(depth)
    for step_id in ready:
        for child in children[step_id]:
            depth[child] = max(depth.get(child, 0), depth[step_id] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    stages: list[list[dict]] = [[] for _ in range(max(depth.values(), default=0) + 1)]
    for step in steps:
        stages[depth.get(step["id"], 0)].append(step)
    return [stage for stage in stages if stage]
