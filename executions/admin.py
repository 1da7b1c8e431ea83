"""The Django admin for executions: a read-only window onto the engine's
records, plus the admin's doors onto the interrupt and resume services (the
"Interrupt selected executions" and "Resume selected executions" actions and
the per-object Interrupt and Resume buttons)."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import quote
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.loader import render_to_string
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from . import display, errors, services
from .models import Execution, Source, iso
from .templatetags import execution_display as tags

# The changelist shows IDs by their first 8 hex digits; searching for one
# should find it.
SHORT_ID = re.compile(r"[0-9a-f]{8}")


def _refusal(exc: Exception) -> errors.ServiceError:
    """The admin's one error mapping: a refusal it can explain in a message,
    or Django's 403 and 404 for a forbidden action and an unknown ID."""
    error = errors.of(exc)
    if isinstance(error, errors.Forbidden):
        raise error
    if isinstance(error, errors.UnknownExecution):
        raise Http404(str(error)) from None
    return error


def _short(execution: Execution) -> str:
    return str(execution.pk)[:8]


class InterruptForm(forms.Form):
    """What the per-object Interrupt button posts: an optional reason, and
    whether to force (cancel steps in flight)."""

    reason = forms.CharField(
        required=False,
        max_length=services.MAX_REASON,
        widget=forms.TextInput(attrs={"placeholder": "Reason (optional)", "size": 40}),
    )
    force = forms.BooleanField(required=False)


class ExecutionActionForm(ActionForm):
    """The changelist's action bar, with the reason the interrupt actions
    record (as the page's and the API's interrupts do)."""

    reason = forms.CharField(
        required=False,
        max_length=services.MAX_REASON,
        widget=forms.TextInput(attrs={"placeholder": "Reason (optional)"}),
    )


def _show(template: str, **context) -> SafeString:
    """A piece of the admin's pages, rendered from its template."""
    return render_to_string(f"admin/executions/execution/{template}", context)


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """Executions are started and advanced by the service and the runner; the
    admin only watches them and asks the service to interrupt."""

    # Columns that fit 1280 px beside the filters: the profile rides with
    # the command, start and end make one duration.
    list_display = (
        "short_id",
        "command",
        "status_badge",
        "progress",
        "started_by",
        "created",
        "duration",
        "interrupted_by",
    )
    list_display_links = ("short_id",)
    list_filter = ("status", "cmd", "created_from", "interrupt_source")
    search_fields = ("cmd", "profile", "title")
    date_hierarchy = "created_at"
    actions = ["interrupt_selected", "force_selected", "resume_selected"]
    action_form = ExecutionActionForm
    readonly_fields = (
        *(field.name for field in Execution._meta.fields),
        "status_badge",
        "progress",
        "steps_table",
        "outcome_summary",
        "interrupt_history",
        "live_page",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "cmd",
                    "title",
                    "status_badge",
                    "profile",
                    "strategy",
                    "params",
                    "live_page",
                )
            },
        ),
        (
            "Timeline",
            {
                "fields": (
                    "created_at",
                    "created_by",
                    "created_by_name",
                    "created_from",
                    "started_at",
                    "finished_at",
                    "resumed_from",
                )
            },
        ),
        ("Steps", {"fields": ("progress", "steps_table")}),
        ("Outcome", {"fields": ("outcome_summary",)}),
        (
            "Interrupt",
            {
                "fields": (
                    "interrupt_requested_at",
                    "interrupt_requested_by",
                    "interrupt_requested_by_name",
                    "interrupt_source",
                    "interrupt_force",
                    "interrupt_reason",
                    "interrupt_history",
                )
            },
        ),
        (
            "Supervisor",
            {"fields": ("supervisor", "heartbeat_at", "timeout", "force_after")},
        ),
    )

    class Media:
        # The app's badges, so a state looks the same here as on its pages.
        css = {"all": ("executions/badges.css",)}

    # -- permissions: the service decides; the engine owns every field ------

    def has_view_permission(self, request: HttpRequest, obj=None) -> bool:
        # The service's check, as at every other door (not "change implies
        # view": nobody changes an execution here).
        return services.can(request.user, "view")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Executions are started through the service (page, API, terminal),
        # which validates the command and its params.
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # A form save writes the whole row and would race the runner's
        # compare-and-set transitions: a stale copy could undo a status.
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        if obj is not None and obj.is_active:
            return False
        return super().has_delete_permission(request, obj)

    def has_interrupt_permission(self, request: HttpRequest) -> bool:
        return services.can(request.user, "interrupt")

    def has_resume_permission(self, request: HttpRequest) -> bool:
        # Resuming starts a new execution: the service's `add` check (not
        # has_add_permission, which is False so the admin's add form stays off).
        return services.can(request.user, "add")

    # -- the changelist ------------------------------------------------------

    @admin.display(description="ID", ordering="id")
    def short_id(self, obj: Execution) -> str:
        return _short(obj)

    @admin.display(description="Command", ordering="cmd")
    def command(self, obj: Execution) -> SafeString:
        return _show("_command.html", execution=obj)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Execution) -> SafeString:
        return render_to_string("executions/display/badge.html", tags.badge(obj.status))

    @admin.display(description="Progress")
    def progress(self, obj: Execution) -> str:
        summary = display.overall(obj.steps)
        return f"{summary['done']} / {summary['total']} · {summary['percent']} %"

    @admin.display(description="Started by", ordering="created_from")
    def started_by(self, obj: Execution) -> str:
        source = display.source_label(obj.created_from)
        if not obj.created_by_name:
            return source
        return f"{obj.created_by_name} ({source})"

    @admin.display(description="Created", ordering="created_at")
    def created(self, obj: Execution) -> SafeString:
        return render_to_string(
            "executions/display/timestamp.html",
            tags.timestamp(iso(obj.created_at)),
        )

    @admin.display(description="Duration")
    def duration(self, obj: Execution) -> str:
        return display.elapsed(iso(obj.started_at), iso(obj.finished_at))

    @admin.display(description="Interrupted by", ordering="interrupt_requested_at")
    def interrupted_by(self, obj: Execution) -> str | None:
        if not obj.interrupt_requested:
            return None
        how = display.source_label(obj.interrupt_source)
        if obj.interrupt_force:
            how += ", forced"
        if not obj.interrupt_requested_by_name:
            return how
        return f"{obj.interrupt_requested_by_name} ({how})"

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet, search_term: str
    ) -> tuple[QuerySet, bool]:
        """Besides cmd, profile and title, find an execution by its full UUID
        (any spelling) or by the 8-digit short ID the list shows."""
        results, may_have_duplicates = super().get_search_results(
            request, queryset, search_term
        )
        term = search_term.strip().lower()
        try:
            by_id = queryset.filter(pk=uuid.UUID(term))
        except ValueError:
            if not SHORT_ID.fullmatch(term):
                return results, may_have_duplicates
            by_id = queryset.filter(id__startswith=term)
        return results | by_id, may_have_duplicates

    # -- the change page -----------------------------------------------------

    @admin.display(description="Steps")
    def steps_table(self, obj: Execution) -> SafeString:
        return _show("_steps.html", steps=obj.steps)

    @admin.display(description="Outcome")
    def outcome_summary(self, obj: Execution) -> SafeString:
        return _show("_outcome.html", outcome=obj.outcome)

    @admin.display(description="Every request")
    def interrupt_history(self, obj: Execution) -> SafeString:
        return _show("_interrupts.html", interrupt=obj.interrupt_snapshot())

    @admin.display(description="Live page")
    def live_page(self, obj: Execution) -> SafeString:
        return _show("_live_page.html", url=obj.get_absolute_url())

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict,
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Execution | None = None,
    ) -> HttpResponse:
        context.update(self._interrupt_context(request, obj))
        context.update(self._resume_context(request, obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    def _interrupt_context(
        self, request: HttpRequest, obj: Execution | None
    ) -> dict[str, object]:
        """What the change form needs to show the Interrupt (or Force
        interrupt) button, or nothing when there is nothing the user may do."""
        if obj is None or not obj.is_active:
            return {}
        if obj.interrupt_force or not services.can(request.user, "interrupt"):
            return {}
        return {
            "interrupt_url": reverse(
                f"{self.admin_site.name}:executions_execution_interrupt",
                args=[quote(obj.pk)],
            ),
            "interrupt_form": InterruptForm(auto_id="interrupt_%s"),
            "interrupt_pending": obj.interrupt_requested,
        }

    def _resume_context(
        self, request: HttpRequest, obj: Execution | None
    ) -> dict[str, object]:
        """What the change form needs to show the Resume button: only for an
        execution that can be resumed, to a user who may start one."""
        if obj is None or obj.status not in services.RESUMABLE:
            return {}
        if not self.has_resume_permission(request):
            return {}
        return {"resume_url": self._admin_url("resume", obj.pk)}

    def _admin_url(self, view: str, object_id: object) -> str:
        return reverse(
            f"{self.admin_site.name}:executions_execution_{view}",
            args=[quote(object_id)],
        )

    def _link(self, execution: Execution) -> SafeString:
        return format_html(
            '<a href="{}">{}</a>',
            self._admin_url("change", execution.pk),
            _short(execution),
        )

    # -- the interrupt doors -------------------------------------------------

    @admin.action(
        description="Interrupt selected executions", permissions=["interrupt"]
    )
    def interrupt_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._interrupt_all(request, queryset, force=False)

    @admin.action(
        description="Force-interrupt selected executions (cancel steps in flight)",
        permissions=["interrupt"],
    )
    def force_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._interrupt_all(request, queryset, force=True)

    def _interrupt_all(
        self, request: HttpRequest, queryset: QuerySet, *, force: bool
    ) -> None:
        """Ask the service for each, then say in one message what happened."""
        reason = request.POST.get("reason", "")
        results: dict[str, list[str]] = defaultdict(list)
        for execution in queryset:
            try:
                result = services.request_interrupt(
                    execution.pk,
                    user=request.user,
                    source=Source.ADMIN,
                    force=force,
                    reason=reason,
                ).result
            except errors.REFUSALS as exc:
                error = _refusal(exc)
                if isinstance(error, errors.NotRunning):
                    results["finished"].append(_short(execution))
                else:
                    results["refused"].append(_short(execution))
                    self.message_user(
                        request,
                        f"Not interrupted {_short(execution)}: {error}",
                        messages.ERROR,
                    )
                continue
            results[result.value].append(_short(execution))
        settled = set(display.SETTLED)
        asked_any = any(key not in settled for key in results)
        self.message_user(
            request,
            display.bulk_summary(results, force=force),
            messages.SUCCESS if asked_any else messages.WARNING,
        )

    def get_urls(self) -> list[URLPattern]:
        # Before the defaults: their catch-all `<path:object_id>/` would take them.
        return [
            path(
                "<path:object_id>/interrupt/",
                self.admin_site.admin_view(self.interrupt_view),
                name="executions_execution_interrupt",
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(self.resume_view),
                name="executions_execution_resume",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def interrupt_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The target of the change page's Interrupt and Force interrupt
        buttons: ask the service, then go back to the change page."""
        services.check(request.user, "interrupt")
        change_url = reverse(
            f"{self.admin_site.name}:executions_execution_change",
            args=[quote(object_id)],
        )
        form = InterruptForm(request.POST)
        if not form.is_valid():
            problems = " ".join(
                error for errors in form.errors.values() for error in errors
            )
            self.message_user(request, f"Not interrupted: {problems}", messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            result = services.request_interrupt(
                object_id,
                user=request.user,
                source=Source.ADMIN,
                force=form.cleaned_data["force"],
                reason=form.cleaned_data["reason"],
            )
        except errors.REFUSALS as exc:
            self.message_user(request, str(_refusal(exc)), messages.WARNING)
            return HttpResponseRedirect(change_url)
        already = result.result == services.Interruption.ALREADY
        self.message_user(
            request,
            f"{_short(result.execution)}: {result.result.label}",
            messages.WARNING if already else messages.SUCCESS,
        )
        return HttpResponseRedirect(change_url)

    # -- the resume doors ----------------------------------------------------

    @admin.action(description="Resume selected executions", permissions=["resume"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        resumed = []
        not_resumable = []
        for execution in queryset:
            try:
                started = services.resume_execution(
                    execution.pk, user=request.user, source=Source.ADMIN
                )
            except errors.REFUSALS as exc:
                error = _refusal(exc)
                if isinstance(error, errors.NotResumable):
                    not_resumable.append(f"{_short(execution)} ({error.status})")
                    continue
                self.message_user(
                    request, f"Not resumed {_short(execution)}: {error}", messages.ERROR
                )
                continue
            if started.created:
                resumed.append((execution, started.execution))
            else:
                self.message_user(
                    request, self._busy(started.execution), messages.WARNING
                )
        if resumed:
            links = format_html_join(
                ", ",
                "{} as {}",
                ((_short(old), self._link(new)) for old, new in resumed),
            )
            self.message_user(
                request, format_html("Resumed {}.", links), messages.SUCCESS
            )
        if not_resumable:
            self.message_user(
                request,
                f"Not resumable: {', '.join(not_resumable)}. Only interrupted, "
                "failed or lost executions can be resumed.",
                messages.WARNING,
            )

    @method_decorator(require_POST)
    def resume_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The target of the change page's Resume button: a new execution of
        the same command and params that skips the steps that succeeded; on
        success, go to its change page."""
        services.check(request.user, "add")
        change_url = self._admin_url("change", object_id)
        try:
            started = services.resume_execution(
                object_id, user=request.user, source=Source.ADMIN
            )
        except errors.REFUSALS as exc:
            error = _refusal(exc)
            if isinstance(error, errors.NotResumable):
                self.message_user(request, str(error), messages.WARNING)
            else:
                self.message_user(request, f"Not resumed: {error}", messages.ERROR)
            return HttpResponseRedirect(change_url)
        new = started.execution
        if not started.created:
            self.message_user(request, self._busy(new), messages.WARNING)
        else:
            self.message_user(
                request,
                format_html(
                    "Resumed {} as {}: the steps that succeeded there are not "
                    "run again.",
                    str(new.resumed_from_id)[:8],
                    self._link(new),
                ),
                messages.SUCCESS,
            )
        return HttpResponseRedirect(self._admin_url("change", new.pk))

    def _busy(self, active: Execution) -> SafeString:
        return format_html(
            "Not resumed: profile “{}” is busy with {} ({}).",
            active.profile,
            self._link(active),
            active.status,
        )
