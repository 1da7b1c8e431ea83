"""JSON API: thin doors onto the service. (Filled in by the web issue.)"""

from __future__ import annotations

from django.http import JsonResponse


def executions(request):
    return JsonResponse({"error": "not_implemented"}, status=501)


def execution(request, execution_id):
    return JsonResponse({"error": "not_implemented"}, status=501)


def interrupt(request, execution_id):
    return JsonResponse({"error": "not_implemented"}, status=501)
