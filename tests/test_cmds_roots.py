"""files.sync from shared doors: only inside EXECUTIONS_FILES_ROOTS, with
path traversal and symlink escapes refused (the terminal is not limited)."""

from __future__ import annotations

import asyncio

import pytest

from executions import services
from executions.engine import OutcomeKind, Scheduler, registry
from executions.models import Execution, Status
from tests.factories import run_here

from .engine.steps import HANG


@pytest.fixture
def roots(tmp_path, settings):
    allowed = tmp_path / "allowed"
    (allowed / "src").mkdir(parents=True)
    (allowed / "src" / "a.txt").write_text("a")
    outside = tmp_path / "outside"
    outside.mkdir()
    settings.EXECUTIONS_FILES_ROOTS = [str(allowed)]
    return allowed, outside


def start(src, dest, *, source="api", user=None):
    return services.start_execution(
        "files.sync",
        {"src": str(src), "dest": str(dest)},
        source=source,
        user=user,
        dispatch=False,
    )


@pytest.mark.django_db
def test_files_sync_inside_roots_is_allowed(roots, make_user):
    allowed, _ = roots

    result = start(allowed / "src", allowed / "dest", user=make_user("add"))

    assert result.created


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("src", "dest", "field"),
    [
        ("allowed/src", "outside/dest", "dest"),
        ("allowed/src", "allowed/../outside/dest", "dest"),
        ("outside", "allowed/dest", "src"),
        ("allowed/link-out", "allowed/dest", "src"),
        ("allowed/src", "allowed/link-out/dest", "dest"),
    ],
)
def test_files_sync_escaping_the_roots_is_refused(roots, tmp_path, src, dest, field):
    allowed, outside = roots
    (allowed / "link-out").symlink_to(outside, target_is_directory=True)

    with pytest.raises(services.ParamsError) as raised:
        start(tmp_path / src, tmp_path / dest)

    assert raised.value.errors[field] == "must be inside one of the allowed roots"
    assert not Execution.objects.exists()


@pytest.mark.django_db
def test_files_sync_without_roots_is_refused_from_the_web(tmp_path, settings):
    settings.EXECUTIONS_FILES_ROOTS = []
    (tmp_path / "src").mkdir()

    with pytest.raises(services.ParamsError) as raised:
        start(tmp_path / "src", tmp_path / "dest", source="web")

    assert raised.value.errors == {
        "src": "files.sync is not allowed here: no EXECUTIONS_FILES_ROOTS"
    }


@pytest.mark.django_db
def test_files_sync_from_the_terminal_is_not_limited(roots):
    allowed, outside = roots

    result = start(allowed / "src", outside / "dest", source="cli")

    assert result.created


@pytest.mark.django_db(transaction=True)
def test_files_sync_never_writes_through_a_symlinked_directory(tmp_path):
    src, dest, outside = tmp_path / "src", tmp_path / "dest", tmp_path / "outside"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "file.txt").write_text("secret")
    outside.mkdir()
    dest.mkdir()
    (dest / "sub").symlink_to(outside, target_is_directory=True)
    execution = start(src, dest, source="cli").execution

    execution = asyncio.run(run_here(execution.id))

    assert execution.status == Status.FAILED
    assert "leads outside" in execution.outcome["errors"]["copy"]
    assert list(outside.iterdir()) == []


def run_as_started(execution: Execution, *, restricted: bool):
    """Run a recorded execution's steps as the runtime does, restricted as a
    run from a shared door is."""
    cmd = registry.get(execution.cmd)
    scheduler = Scheduler(
        cmd.build(execution.params), cmd.bind(execution.params), restricted=restricted
    )
    return asyncio.run(asyncio.wait_for(scheduler.run(), HANG))


@pytest.mark.django_db
def test_files_sync_refuses_at_run_time_a_dest_that_became_a_symlink_out(
    roots, make_user
):
    allowed, outside = roots
    (allowed / "dest").mkdir()
    execution = start(allowed / "src", allowed / "dest", user=make_user("add"))
    (allowed / "dest").rmdir()
    (allowed / "dest").symlink_to(outside, target_is_directory=True)

    outcome = run_as_started(execution.execution, restricted=True)

    assert outcome.kind is OutcomeKind.FAILED
    assert outcome.errors["copy"] == (
        f"PermissionError: dest {allowed / 'dest'} is outside the allowed roots "
        f"(EXECUTIONS_FILES_ROOTS): it leads to {outside}"
    )
    assert list(outside.iterdir()) == []


@pytest.mark.django_db
def test_files_sync_refuses_at_run_time_a_src_that_became_a_symlink_out(
    roots, make_user
):
    allowed, outside = roots
    (outside / "secret.txt").write_text("secret")
    execution = start(allowed / "src", allowed / "dest", user=make_user("add"))
    (allowed / "src" / "a.txt").unlink()
    (allowed / "src").rmdir()
    (allowed / "src").symlink_to(outside, target_is_directory=True)

    outcome = run_as_started(execution.execution, restricted=True)

    assert outcome.errors["scan"].startswith(
        f"PermissionError: src {allowed / 'src'} is outside the allowed roots"
    )
    assert not (allowed / "dest").exists()


@pytest.mark.django_db
def test_files_sync_from_the_terminal_follows_a_dest_symlink_at_run_time(roots):
    allowed, outside = roots
    (allowed / "dest").symlink_to(outside, target_is_directory=True)
    execution = start(allowed / "src", allowed / "dest", source="cli")

    outcome = run_as_started(execution.execution, restricted=False)

    assert outcome.kind is OutcomeKind.COMPLETE
    assert (outside / "a.txt").read_text() == "a"
