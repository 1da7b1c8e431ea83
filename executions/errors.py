"""The service's errors: one vocabulary for every door.

Each error has a `code` (the JSON API's `"error"`, the websocket's `"code"`),
an HTTP status and `extra` fields for the answer. The engine's own errors
(`ParamsError`, `UnknownCmd`) stay Django-free; `of()` gives them their code
here, so each door maps every refusal in one place:

    try:
        ...
    except errors.REFUSALS as exc:
        error = errors.of(exc)
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied

from .engine import ParamsError, UnknownCmd


class ServiceError(Exception):
    """A request the service refuses; nothing was changed."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def as_json(self) -> dict[str, Any]:
        """The JSON API's body: `{"error": code, "message": ..., **extra}`."""
        return {"error": self.code, "message": self.message, **self.extra}


class Forbidden(ServiceError, PermissionDenied):
    """The user may not do that. A `PermissionDenied`, so Django's pages and
    the admin answer it with their 403 as before."""

    code = "forbidden"
    http_status = 403


class UnknownExecution(ServiceError, LookupError):
    """No execution has that ID (or the ID is not a UUID)."""

    code = "not_found"
    http_status = 404

    def __init__(self, execution_id: Any) -> None:
        self.execution_id = execution_id
        super().__init__(f"No execution with ID {execution_id!r}.")


class InvalidParams(ServiceError):
    """Some fields are wrong; `fields` maps each to what is wrong with it."""

    code = "invalid_params"

    def __init__(self, fields: dict[str, str]) -> None:
        self.fields = dict(fields)
        super().__init__(str(ParamsError(self.fields)), fields=self.fields)


class UnknownCommand(ServiceError):
    code = "unknown_cmd"

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(str(UnknownCmd(name, known)), cmd=name, known=list(known))


class NotRunning(ServiceError):
    """The execution has finished: there is nothing to interrupt."""

    code = "not_running"
    http_status = 409

    def __init__(self, execution) -> None:
        self.execution = execution
        self.status = execution.status
        super().__init__(
            f"Execution {execution.id} is not running: it is {execution.status}.",
            status=str(execution.status),
        )


class NotResumable(ServiceError):
    """Only an interrupted, failed or lost execution can be resumed, once."""

    code = "not_resumable"
    http_status = 409

    def __init__(self, execution, *, already: bool = False) -> None:
        self.execution = execution
        self.status = execution.status
        if already:
            message = (
                f"Execution {execution.id} was resumed already: resume the "
                "execution that resumed it instead."
            )
        else:
            message = (
                f"Execution {execution.id} cannot be resumed: it is "
                f"{execution.status}; only interrupted, failed or lost "
                "executions can."
            )
        super().__init__(message, status=str(execution.status))


#: Everything a door catches: the service's errors, the engine's it passes
#: through, and Django's `PermissionDenied` (raised by Django's own checks).
REFUSALS = (ServiceError, ParamsError, UnknownCmd, PermissionDenied)


def of(error: Exception) -> ServiceError:
    """`error` (one of `REFUSALS`) as a `ServiceError`."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, ParamsError):
        return InvalidParams(error.errors)
    if isinstance(error, UnknownCmd):
        return UnknownCommand(error.name, error.known)
    if isinstance(error, PermissionDenied):
        return Forbidden(str(error) or "You do not have permission to do that.")
    raise TypeError(f"Not a refusal: {error!r}") from error
