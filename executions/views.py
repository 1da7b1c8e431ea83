"""Pages: thin doors onto the service. (Filled in by the web issue.)"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def execution_list(request):
    return HttpResponse("executions")


@login_required
def execution_detail(request, execution_id):
    return HttpResponse(execution_id)


@login_required
def execution_interrupt(request, execution_id):
    return HttpResponse(status=405)
