# Least privilege. The agents' task role may touch only the `data/` prefix
# of the bucket (segments and archive) and use the stack's KMS key; the
# FoundationDB backup prefix belongs to the backup agents alone. Execution
# (pulling the image, writing logs, reading the cluster file) is a separate
# role from what the application itself may do.

locals {
  data_prefix   = "data"
  backup_prefix = "fdb-backup"
}

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "execution" {
  name_prefix        = "${var.name}-exec-"
  description        = "ECS pulls the Silt image, writes its logs and reads the cluster file"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "execution" {
  statement {
    sid       = "ReadTheClusterFile"
    actions   = ["ssm:GetParameters"]
    resources = [aws_ssm_parameter.cluster_file.arn]
  }
  statement {
    sid       = "DecryptTheClusterFile"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.silt.arn]
  }
}

resource "aws_iam_role_policy" "execution" {
  name   = "cluster-file"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.execution.json
}

# What a Silt process (agent or compactor) may do with the bucket.
data "aws_iam_policy_document" "data_access" {
  statement {
    sid       = "ListTheDataPrefix"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.data.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.data_prefix}/*"]
    }
  }
  statement {
    sid = "ReadWriteTheDataPrefix"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.data.arn}/${local.data_prefix}/*"]
  }
  statement {
    sid       = "UseTheBucketKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.silt.arn]
  }
}

resource "aws_iam_role" "agent" {
  name_prefix        = "${var.name}-agent-"
  description        = "Silt agents: read and write segments under data/"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "agent" {
  name   = "data-access"
  role   = aws_iam_role.agent.id
  policy = data.aws_iam_policy_document.data_access.json
}
