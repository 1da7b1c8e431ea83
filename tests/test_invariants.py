"""Random interleavings of start, progress, interrupt, force, completion,
failure and reaping, driven through the service and the model's transitions
as runners and doors use them. After every step:

- a terminal state is final: no later write changes it;
- every interrupted execution carries the request that interrupted it;
- an outcome's processed and not-processed lists partition the steps;
- at most one execution is active per profile.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from executions import services
from executions.models import ACTIVE, TERMINAL, Execution, Source, Status

PROFILES = st.sampled_from([None, "staging", "production"])


def outcome_of(execution: Execution, kind: str) -> dict:
    """What a runner reports: processed are the succeeded steps."""
    ids = [step["id"] for step in execution.steps]
    processed = [s["id"] for s in execution.steps if s["status"] == "succeeded"]
    return {
        "kind": kind,
        "steps_processed": processed,
        "steps_not_processed": [i for i in ids if i not in processed],
        "errors": {ids[-1]: "RuntimeError: boom"} if kind == "failed" else {},
    }


class Interleavings(RuleBasedStateMachine):
    executions = Bundle("executions")

    def __init__(self) -> None:
        super().__init__()
        # Each example starts from an empty table.
        Execution.objects.all().delete()
        self.final: dict[str, str] = {}

    @rule(target=executions, profile=PROFILES, count=st.integers(1, 4))
    def start(self, profile, count):
        result = services.start_execution(
            "demo.steps",
            {"count": count},
            profile=profile,
            source=Source.API,
            dispatch=False,
        )
        return result.execution.pk

    @rule(pk=executions)
    def claim(self, pk):
        Execution.objects.get(pk=pk).claim("runner")

    @rule(pk=executions, done=st.integers(0, 4))
    def progress(self, pk, done):
        execution = Execution.objects.get(pk=pk)
        steps = [
            {**step, "status": "succeeded" if index < done else step["status"]}
            for index, step in enumerate(execution.steps)
        ]
        execution.save_steps(steps)

    @rule(pk=executions, force=st.booleans(), source=st.sampled_from(Source.values))
    def interrupt(self, pk, force, source):
        try:
            services.request_interrupt(pk, source=source, force=force)
        except services.NotRunning:
            assert Execution.objects.get(pk=pk).status in TERMINAL

    @rule(pk=executions)
    def complete(self, pk):
        """The runner ends: interrupted if asked and work was left, else
        succeeded (an interrupt after the last step changes nothing)."""
        execution = Execution.objects.get(pk=pk)
        left = any(step["status"] != "succeeded" for step in execution.steps)
        if execution.interrupt_requested and left:
            execution.finish(
                Status.INTERRUPTED,
                outcome=outcome_of(execution, "interrupted"),
                steps=execution.steps,
            )
        else:
            steps = [{**step, "status": "succeeded"} for step in execution.steps]
            execution.steps = steps
            execution.finish(
                Status.SUCCEEDED, outcome=outcome_of(execution, "complete"), steps=steps
            )

    @rule(pk=executions)
    def fail(self, pk):
        execution = Execution.objects.get(pk=pk)
        execution.finish(
            Status.FAILED,
            outcome=outcome_of(execution, "failed"),
            steps=execution.steps,
        )

    @rule(pk=consumes(executions))
    def reap(self, pk):
        Execution.objects.get(pk=pk).reap()

    @invariant()
    def terminal_states_are_final(self):
        for pk, status in Execution.objects.values_list("pk", "status"):
            if str(pk) in self.final:
                assert status == self.final[str(pk)]
            elif status in TERMINAL:
                self.final[str(pk)] = status

    @invariant()
    def interrupted_executions_carry_their_request(self):
        assert not Execution.objects.filter(
            status=Status.INTERRUPTED, interrupt_requested_at__isnull=True
        ).exists()

    @invariant()
    def outcomes_partition_the_steps(self):
        for execution in Execution.objects.exclude(outcome=None):
            processed = execution.outcome["steps_processed"]
            not_processed = execution.outcome["steps_not_processed"]
            ids = [step["id"] for step in execution.steps]
            assert sorted(processed + not_processed) == sorted(ids)
            assert not set(processed) & set(not_processed)

    @invariant()
    def one_active_execution_per_profile(self):
        profiles = list(
            Execution.objects.filter(
                status__in=ACTIVE, profile__isnull=False
            ).values_list("profile", flat=True)
        )
        assert len(profiles) == len(set(profiles))


@pytest.mark.django_db
def test_interleavings_keep_the_invariants():
    run_state_machine_as_test(
        Interleavings,
        settings=settings(
            max_examples=60,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
