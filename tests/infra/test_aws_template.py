"""infra/aws/template.yaml: cfn-lint passes, and the IAM policies stay least-privilege."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "aws" / "template.yaml"

#: Every SQS action the sqs:// adapter and the Lambda event source mapping call (batch calls are
#: authorised by their single-message action).
ADAPTER_SQS_ACTIONS = {
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
}
OWN_QUEUES = {"WorkQueue", "DeadLetterQueue"}


def _missing(reason: str) -> None:
    if os.environ.get("PYGIGO_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def cfn_lint() -> str:
    found = shutil.which(
        "cfn-lint", path=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    )
    if found is None:
        _missing("cfn-lint is not installed; pip install -e '.[dev]'")
    assert found is not None
    return found


def template() -> dict[str, Any]:
    try:
        from cfnlint.decode import decode
    except ImportError:
        _missing("cfn-lint is not installed; pip install -e '.[dev]'")
    parsed, problems = decode(str(TEMPLATE))
    assert not problems and parsed is not None
    return dict(parsed)


def test_cfn_lint_passes() -> None:
    result = subprocess.run([cfn_lint(), str(TEMPLATE)], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr


def test_iam_grants_only_adapter_actions_on_own_queues() -> None:
    resources = template()["Resources"]
    sqs_statements = [
        statement
        for resource in resources.values()
        if resource["Type"] == "AWS::IAM::Role"
        for policy in resource["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
        if any(action.startswith("sqs:") for action in statement["Action"])
    ]
    assert sqs_statements
    for statement in sqs_statements:
        assert set(statement["Action"]) <= ADAPTER_SQS_ACTIONS, statement["Action"]
        targets = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        for target in targets:
            assert isinstance(target, dict) and target["Fn::GetAtt"][0] in OWN_QUEUES, target


def test_queue_redrives_and_worker_reports_partial_failures() -> None:
    resources = template()["Resources"]
    redrive = resources["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    mapping = resources["WorkerEventSource"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert resources["Worker"]["Properties"]["ImageConfig"]["Command"] == [
        "pygigo.platform.lambda_handler.handler"
    ]


def test_every_process_gets_the_generated_secret_key_and_debug_is_off() -> None:
    """Messages are signed with a key derived from DJANGO_SECRET_KEY: web and worker need the
    same one, from the secrets store, never the public development default."""
    resources = template()["Resources"]
    secret = resources["DjangoSecretKey"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["GenerateSecretString"]["PasswordLength"] >= 50
    worker_env = resources["Worker"]["Properties"]["Environment"]["Variables"]
    assert "${DjangoSecretKey}" in worker_env["DJANGO_SECRET_KEY"]["Fn::Sub"]
    (web,) = resources["WebTaskDefinition"]["Properties"]["ContainerDefinitions"]
    assert {"Name": "DJANGO_SECRET_KEY", "ValueFrom": {"Ref": "DjangoSecretKey"}} in web["Secrets"]
    assert {"Name": "DJANGO_DEBUG", "Value": "0"} in web["Environment"]
    assert worker_env.get("DJANGO_DEBUG", "0") == "0"
    grants = [
        statement
        for policy in resources["WebExecutionRole"]["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
    ]
    assert {"Ref": "DjangoSecretKey"} in [
        g["Resource"] for g in grants if "secretsmanager:GetSecretValue" in g["Action"]
    ]
