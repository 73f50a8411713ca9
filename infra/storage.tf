# The bucket holding segments (segments/…), the Parquet archive (archive/…)
# and FoundationDB backups (fdb-backup/…). Encrypted with a customer key,
# private, TLS-only. It has NO expiration rule: the compactor alone decides
# what is deleted and when (retention, merged segments, garbage).

data "aws_iam_policy_document" "kms" {
  #checkov:skip=CKV_AWS_109:This is a key policy: "*" is the key itself, and the account root delegates use of the key to IAM policies, which grant it narrowly.
  #checkov:skip=CKV_AWS_111:As above: key policies name the key as "*"; write access is delegated to IAM.
  #checkov:skip=CKV_AWS_356:As above: in a key policy "*" means this key only.
  statement {
    sid       = "AccountAdministersTheKeyAndDelegatesToIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogsEncryptsThisStacksLogGroups"
    actions   = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:/silt/${var.name}/*"]
    }
  }
}

resource "aws_kms_key" "silt" {
  description             = "Silt ${var.name}: segments, archive, backups and logs"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags = local.tags
}

resource "aws_kms_alias" "silt" {
  name          = "alias/silt-${var.name}"
  target_key_id = aws_kms_key.silt.key_id
}

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Cross-region replication doubles cost; durability comes from S3's own multi-AZ storage and the FoundationDB backup lives in the same bucket by design. Enable it per deployment if a regional outage must be survived.
  #checkov:skip=CKV_AWS_18:Server access logs would need a second bucket and log every segment GET; CloudTrail data events are the recommended audit trail for this bucket.
  #checkov:skip=CKV2_AWS_62:Nothing consumes S3 event notifications; the metadata store is the index of objects.
  #checkov:skip=CKV_AWS_21:Versioning would keep every segment the compactor deletes (merge, retention, GC) and silently grow storage; objects are written once and never overwritten.
  bucket_prefix = "silt-${var.name}-"
  tags          = local.tags
}

resource "aws_s3_bucket_ownership_controls" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "data" {
  bucket                  = aws_s3_bucket.data.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.silt.arn
    }
    # One data key per bucket rather than per object: far fewer KMS calls.
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "data" {
  bucket = aws_s3_bucket.data.id
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data.arn, "${aws_s3_bucket.data.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "data" {
  bucket     = aws_s3_bucket.data.id
  depends_on = [aws_s3_bucket_public_access_block.data]
  policy     = data.aws_iam_policy_document.bucket.json
}

# Optional: a directory bucket in one zone for low-latency segment writes.
resource "aws_s3_directory_bucket" "express" {
  count  = var.enable_express_one_zone ? 1 : 0
  bucket = "silt-${var.name}--${var.express_one_zone_az_id}--x-s3"
  location {
    name = var.express_one_zone_az_id
  }
  force_destroy = false
}
