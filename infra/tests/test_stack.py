"""Invariants of the Terraform stack, checked on the parsed HCL."""

import re

import pytest

from conftest import INFRA, load, one, tf_files


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_file_parses(path):
    assert isinstance(load(path), dict)


def by_bucket(stack, rtype):
    """The resources of a type that configure the data bucket."""
    return [b for b in stack["resource"].get(rtype, {}).values() if b.get("bucket") == "${aws_s3_bucket.data.id}"]


def test_bucket_is_encrypted_with_the_customer_key(stack):
    [sse] = by_bucket(stack, "aws_s3_bucket_server_side_encryption_configuration")
    rule = one(sse["rule"])
    default = one(rule["apply_server_side_encryption_by_default"])
    assert default["sse_algorithm"] == "aws:kms"
    assert default["kms_master_key_id"] == "${aws_kms_key.silt.arn}"
    assert stack["resource"]["aws_kms_key"]["silt"]["enable_key_rotation"] is True


def test_bucket_blocks_public_access_and_owns_its_objects(stack):
    [pab] = by_bucket(stack, "aws_s3_bucket_public_access_block")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert pab[flag] is True, flag
    [own] = by_bucket(stack, "aws_s3_bucket_ownership_controls")
    assert one(own["rule"])["object_ownership"] == "BucketOwnerEnforced"


def test_lifecycle_aborts_multipart_uploads_and_never_expires_objects(stack):
    [lc] = by_bucket(stack, "aws_s3_bucket_lifecycle_configuration")
    rules = lc["rule"]
    aborts = [r for r in rules if "abort_incomplete_multipart_upload" in r and r["status"] == "Enabled"]
    assert aborts, "an enabled rule aborts incomplete multipart uploads"
    for r in rules:
        for forbidden in ("expiration", "noncurrent_version_expiration", "transition"):
            assert forbidden not in r, f"rule {r.get('id')} has {forbidden}: the compactor owns deletes"


def test_bucket_policy_denies_plain_http(stack):
    [policy] = by_bucket(stack, "aws_s3_bucket_policy")
    assert policy["policy"] == "${data.aws_iam_policy_document.bucket.json}"
    doc = stack["data"]["aws_iam_policy_document"]["bucket"]
    denies = [s for s in doc["statement"] if s.get("effect") == "Deny"]
    assert any(
        one(s["condition"])["variable"] == "aws:SecureTransport" and one(s["condition"])["values"] == ["false"]
        and s["actions"] == ["s3:*"]
        for s in denies
    )


def test_s3_traffic_uses_the_gateway_endpoint(stack):
    ep = stack["resource"]["aws_vpc_endpoint"]["s3"]
    assert ep["vpc_endpoint_type"] == "Gateway"
    assert ep["service_name"].endswith(".s3")
    assert ep["route_table_ids"] == "${aws_route_table.private[*].id}"


def test_every_variable_and_output_is_documented(stack):
    for name, v in stack["variable"].items():
        assert v.get("description"), f"variable {name} has no description"
        assert "type" in v, f"variable {name} has no type"
        if v["type"] not in ("bool", "${bool}"):
            assert v.get("validation"), f"variable {name} has no validation"
    for name, o in stack["output"].items():
        assert o.get("description"), f"output {name} has no description"


SKIP = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")


def test_every_checkov_skip_carries_a_reason():
    for path in tf_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = SKIP.search(line)
            if m:
                assert m.group(2) and len(m.group(2).strip()) > 20, f"{path.name}:{n}: skip {m.group(1)} without a reason"
