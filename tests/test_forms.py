"""The start form: inputs from each command's params schema, a `<select>`
for enumerated params, and the service's refusals shown on the inputs."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from executions import services
from executions.forms import Choice, StartForm
from executions.models import Source


def bound(**fields: str) -> StartForm:
    data = QueryDict(mutable=True)
    data.update(fields)
    return StartForm(data)


def field(form: StartForm, cmd: str, name: str):
    fieldset = next(f for f in form.fieldsets() if f.name == cmd)
    return next(f for f in fieldset.fields if f.name == f"{cmd}.{name}")


def test_start_form_offers_an_enumerated_param_as_a_select():
    fail_step = field(StartForm(), "demo.deploy", "fail_step")

    assert fail_step.input_type == "select"
    assert fail_step.options == [
        Choice("", "none", True),
        Choice("app_download", "app_download", False),
        Choice("s3_bucket", "s3_bucket", False),
        Choice("iam_policy", "iam_policy", False),
        Choice("iam_role", "iam_role", False),
        Choice("instance_profile", "instance_profile", False),
        Choice("s3_object", "s3_object", False),
    ]


def test_start_form_keeps_the_posted_choice_selected():
    form = bound(cmd="demo.deploy", **{"demo.deploy.fail_step": "iam_role"})

    options = field(form, "demo.deploy", "fail_step").options

    assert [option.value for option in options if option.selected] == ["iam_role"]


def test_start_form_keeps_plain_inputs_for_params_without_choices():
    count = field(StartForm(), "demo.steps", "count")

    assert (count.input_type, count.options, count.min, count.max) == (
        "number",
        [],
        1,
        1000,
    )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "errors"),
    [
        (
            {"demo.deploy.fail_step": "s3_everything"},
            {
                "demo.deploy.fail_step": "must be one of: app_download, s3_bucket, "
                "iam_policy, iam_role, instance_profile, s3_object"
            },
        ),
        (
            {"demo.deploy.seconds": "9999", "demo.deploy.cooperative": "perhaps"},
            {
                "demo.deploy.seconds": "must be at most 3600",
                "demo.deploy.cooperative": "must be true or false",
            },
        ),
    ],
)
def test_start_form_shows_the_schema_refusals_on_their_inputs(
    fields, errors, make_user
):
    form = bound(cmd="demo.deploy", **fields)

    with pytest.raises(services.ParamsError) as raised:
        services.start_execution(
            **form.start_args(), user=make_user("add"), source=Source.WEB
        )
    form.add_errors(raised.value.errors)

    assert form.errors == errors
    first = next(iter(errors))
    assert field(form, "demo.deploy", first.split(".")[-1]).error == errors[first]
