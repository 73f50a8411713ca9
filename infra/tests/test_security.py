"""Least privilege and network isolation, on the parsed HCL."""

import pytest

from conftest import one

AGENT_S3_ALLOWLIST = {
    "s3:ListBucket",
    "s3:ListBucketMultipartUploads",
    "s3:GetObject",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:ListMultipartUploadParts",
}
KMS_USE = {"kms:Decrypt", "kms:GenerateDataKey"}
# The KMS key policy names the key itself as "*" (see its checkov skips);
# every other document must name its resources.
KEY_POLICY = "kms"


def statements(doc):
    return doc.get("statement", [])


def items(value):
    """A list attribute, or one expression (e.g. `concat(...)`) standing for a list."""
    return [value] if isinstance(value, str) else value


@pytest.mark.parametrize("role", ["agent", "compactor"])
def test_task_roles_have_exactly_the_allowlist(stack, role):
    policy = stack["resource"]["aws_iam_role_policy"][role]
    assert policy["role"] == f"${{aws_iam_role.{role}.id}}"
    # No other policy is attached to a task role.
    others = [p for n, p in stack["resource"]["aws_iam_role_policy"].items() if n != role and p["role"] == policy["role"]]
    assert not others and f"aws_iam_role.{role}" not in str(stack["resource"].get("aws_iam_role_policy_attachment", {}))
    name = policy["policy"].removeprefix("${data.aws_iam_policy_document.").removesuffix(".json}")
    doc = stack["data"]["aws_iam_policy_document"][name]
    actions = {a for s in statements(doc) for a in s["actions"]}
    assert actions == AGENT_S3_ALLOWLIST | KMS_USE
    by_sid = {s["sid"]: s for s in statements(doc)}
    assert by_sid["ListTheDataPrefix"]["resources"] == ["${aws_s3_bucket.data.arn}"]
    assert by_sid["ReadWriteTheDataPrefix"]["resources"] == ["${aws_s3_bucket.data.arn}/${local.data_prefix}/*"]
    assert by_sid["UseTheBucketKey"]["resources"] == ["${aws_kms_key.silt.arn}"]
    # Listing is confined to the same prefix.
    cond = one(by_sid["ListTheDataPrefix"]["condition"])
    assert (cond["variable"], cond["values"]) == ("s3:prefix", ["${local.data_prefix}/*"])


def test_no_wildcard_action_or_resource_is_allowed(stack):
    for name, doc in stack["data"]["aws_iam_policy_document"].items():
        if name == KEY_POLICY:
            continue
        for s in statements(doc):
            if s.get("effect") == "Deny":
                continue  # denying broadly is the safe direction
            for a in items(s.get("actions", [])):
                assert a != "*" and not a.endswith(":*"), f"{name}: wildcard action {a}"
            for r in items(s.get("resources", [])):
                assert r != "*", f"{name}: wildcard resource"


@pytest.mark.parametrize("service", ["agent", "compactor"])
def test_execution_role_is_separate_from_task_roles(stack, service):
    td = stack["resource"]["aws_ecs_task_definition"][service]
    assert td["execution_role_arn"] == "${aws_iam_role.execution.arn}"
    assert td["task_role_arn"] == f"${{aws_iam_role.{service}.arn}}"


def test_compactor_runs_one_task(stack):
    assert stack["resource"]["aws_ecs_service"]["compactor"]["desired_count"] == 1


@pytest.mark.parametrize("container", ["agent_container", "compactor_container"])
def test_containers_have_read_only_roots_and_log_to_cloudwatch(stack, container):
    c = next(b[container] for b in stack["locals"] if container in b)
    assert c["readonlyRootFilesystem"] is True
    assert c["logConfiguration"]["logDriver"] == "awslogs"
    assert c["secrets"][0]["valueFrom"] == "${aws_ssm_parameter.cluster_file.arn}"


def test_backups_have_their_own_prefix_and_credentials(stack):
    doc = stack["data"]["aws_iam_policy_document"]["fdb_backup"]
    s3 = [r for s in statements(doc) for r in s["resources"] if "aws_s3_bucket.data.arn}/" in r]
    assert s3 == ["${aws_s3_bucket.data.arn}/${local.backup_prefix}/*"]
    data = stack["data"]["aws_iam_policy_document"]["data_access"]
    assert all("backup" not in r for s in statements(data) for r in s["resources"])


def test_fdb_security_group_opens_only_its_ports_to_named_groups(stack):
    rules = [r for r in stack["resource"]["aws_vpc_security_group_ingress_rule"].values()
             if r["security_group_id"] == "${aws_security_group.fdb.id}"]
    assert rules, "FoundationDB has ingress rules"
    for r in rules:
        assert (r["from_port"], r["to_port"]) == ("${local.fdb_port_first}", "${local.fdb_port_last}")
        assert r["ip_protocol"] == "tcp"
        assert "cidr_ipv4" not in r and "cidr_ipv6" not in r, "no address ranges, only security groups"
        assert "referenced_security_group_id" in r
    # The for_each names exactly the cluster itself and the agents.
    sources = one(rules)["for_each"] if len(rules) == 1 else None
    assert sources == {
        "cluster": "${aws_security_group.fdb.id}",
        "agents": "${aws_security_group.agent.id}",
        "compactor": "${aws_security_group.compactor.id}",
    }


def test_nodes_require_imdsv2_and_encrypt_volumes(stack):
    lt = stack["resource"]["aws_launch_template"]["fdb"]
    assert one(lt["metadata_options"])["http_tokens"] == "required"
    ebs = one(one(lt["block_device_mappings"])["ebs"])
    assert ebs["encrypted"] is True and ebs["kms_key_id"] == "${aws_kms_key.silt.arn}"


def test_storage_nodes_are_one_per_zone_on_fixed_interfaces(stack):
    asg = stack["resource"]["aws_autoscaling_group"]["fdb_storage"]
    assert asg["count"] == "${local.az_count}"
    assert (asg["min_size"], asg["max_size"], asg["desired_capacity"]) == (1, 1, 1)
    eni = stack["resource"]["aws_network_interface"]["storage"]
    assert eni["private_ips"] == ["${local.storage_ips[count.index]}"]


def test_redundancy_follows_the_number_of_fault_domains(stack):
    locals_ = {}
    for block in stack.get("locals", []):
        locals_.update(block)
    assert locals_["redundancy"] == '${local.az_count >= 5 ? "triple" : "double"}'


def test_agents_autoscale_on_cpu_and_read_only_root(stack):
    policy = stack["resource"]["aws_appautoscaling_policy"]["agent_cpu"]
    cfg = one(policy["target_tracking_scaling_policy_configuration"])
    assert one(cfg["predefined_metric_specification"])["predefined_metric_type"] == "ECSServiceAverageCPUUtilization"
    assert cfg["scale_in_cooldown"] >= 600
    target = stack["variable"]["agent_cpu_target"]
    assert 50 <= target["default"] <= 60
    assert stack["variable"]["agent_min_count"]["default"] >= 3
    tg = stack["resource"]["aws_lb_target_group"]["agent"]
    assert one(tg["health_check"])["path"] == "/healthz"
