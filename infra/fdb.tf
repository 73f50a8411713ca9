# FoundationDB on EC2.
#
# Storage/log nodes keep fixed private IPs: each zone has a pre-created
# network interface, and an autoscaling group of exactly one instance there
# re-attaches it whenever the instance is replaced. Coordinators are those
# fixed addresses, so the cluster file never has to change when an instance
# does. Stateless processes (proxies, resolvers) and the continuous backup
# agents run in a separately sized group. Redundancy: `double` below five
# fault domains (zones), `triple` from five.

locals {
  fdb_port_first = 4500
  fdb_port_last  = 4510
  redundancy     = local.az_count >= 5 ? "triple" : "double"
  storage_ips    = [for s in aws_subnet.private : cidrhost(s.cidr_block, 10)]
  coordinators   = join(",", [for ip in local.storage_ips : "${ip}:${local.fdb_port_first}"])
  cluster_file   = "silt_${replace(var.name, "-", "_")}:${random_id.cluster.hex}@${local.coordinators}"
  fdb_packages = {
    version        = var.fdb_version
    server_sha256  = var.fdb_server_rpm_sha256
    clients_sha256 = var.fdb_clients_rpm_sha256
  }
}

resource "random_id" "cluster" {
  byte_length = 8
}

# The cluster file, read by agents (ECS secret) and nodes at start. Nodes
# publish FoundationDB's own rewrite of it when coordinators change, so
# Terraform sets it once and then leaves it alone.
resource "aws_ssm_parameter" "cluster_file" {
  name        = "/silt/${var.name}/fdb.cluster"
  description = "FoundationDB cluster file of Silt ${var.name}"
  type        = "SecureString"
  key_id      = aws_kms_key.silt.arn
  value       = local.cluster_file
  lifecycle {
    ignore_changes = [value]
  }
  tags = local.tags
}

resource "aws_security_group" "fdb" {
  name_prefix = "${var.name}-fdb-"
  description = "FoundationDB: its ports only, from the cluster itself and from Silt"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "fdb" {
  for_each = {
    cluster   = aws_security_group.fdb.id
    agents    = aws_security_group.agent.id
    compactor = aws_security_group.compactor.id
  }
  security_group_id            = aws_security_group.fdb.id
  description                  = "FoundationDB from ${each.key}"
  referenced_security_group_id = each.value
  ip_protocol                  = "tcp"
  from_port                    = local.fdb_port_first
  to_port                      = local.fdb_port_last
}

resource "aws_vpc_security_group_egress_rule" "fdb_cluster" {
  security_group_id            = aws_security_group.fdb.id
  description                  = "FoundationDB to the rest of the cluster"
  referenced_security_group_id = aws_security_group.fdb.id
  ip_protocol                  = "tcp"
  from_port                    = local.fdb_port_first
  to_port                      = local.fdb_port_last
}

resource "aws_vpc_security_group_egress_rule" "fdb_https" {
  security_group_id = aws_security_group.fdb.id
  description       = "HTTPS to S3 (backups), SSM and the package mirror"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "agent_fdb" {
  security_group_id            = aws_security_group.agent.id
  description                  = "To FoundationDB"
  referenced_security_group_id = aws_security_group.fdb.id
  ip_protocol                  = "tcp"
  from_port                    = local.fdb_port_first
  to_port                      = local.fdb_port_last
}

resource "aws_network_interface" "storage" {
  count           = local.az_count
  subnet_id       = aws_subnet.private[count.index].id
  private_ips     = [local.storage_ips[count.index]]
  security_groups = [aws_security_group.fdb.id]
  description     = "FoundationDB coordinator ${var.availability_zones[count.index]}"
  tags            = merge(local.tags, { Name = "${var.name}-fdb-${var.availability_zones[count.index]}" })
}

data "aws_ssm_parameter" "al2023" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

# Storage nodes: attach their zone's interface, read and republish the cluster file.
data "aws_iam_policy_document" "fdb_storage" {
  statement {
    sid       = "AttachTheCoordinatorInterface"
    actions   = ["ec2:AttachNetworkInterface"]
    resources = concat(aws_network_interface.storage[*].arn, ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:instance/*"])
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/silt:stack"
      values   = [var.name]
    }
  }
  statement {
    sid       = "ClusterFile"
    actions   = ["ssm:GetParameter", "ssm:PutParameter"]
    resources = [aws_ssm_parameter.cluster_file.arn]
  }
  statement {
    sid       = "ClusterFileKey"
    actions   = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.silt.arn]
  }
}

# Stateless nodes and backup agents: read the cluster file; write backups
# under their own prefix, and nowhere else.
data "aws_iam_policy_document" "fdb_backup" {
  statement {
    sid       = "ReadTheClusterFile"
    actions   = ["ssm:GetParameter"]
    resources = [aws_ssm_parameter.cluster_file.arn]
  }
  statement {
    sid       = "ListTheBackupPrefix"
    actions   = ["s3:ListBucket", "s3:ListBucketMultipartUploads"]
    resources = [aws_s3_bucket.data.arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.backup_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadWriteTheBackupPrefix"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.data.arn}/${local.backup_prefix}/*"]
  }
  statement {
    sid       = "UseTheKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.silt.arn]
  }
}

resource "aws_iam_role" "fdb" {
  for_each           = { storage = data.aws_iam_policy_document.fdb_storage.json, stateless = data.aws_iam_policy_document.fdb_backup.json }
  name_prefix        = "${var.name}-fdb-${each.key}-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "fdb" {
  for_each = aws_iam_role.fdb
  name     = "fdb-${each.key}"
  role     = each.value.id
  policy   = each.key == "storage" ? data.aws_iam_policy_document.fdb_storage.json : data.aws_iam_policy_document.fdb_backup.json
}

# Administration through SSM Session Manager: no SSH, no open port.
resource "aws_iam_role_policy_attachment" "fdb_ssm" {
  for_each   = aws_iam_role.fdb
  role       = each.value.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "fdb" {
  for_each    = aws_iam_role.fdb
  name_prefix = "${var.name}-fdb-${each.key}-"
  role        = each.value.name
}

resource "aws_launch_template" "fdb" {
  for_each = {
    storage = {
      instance_type = var.fdb_storage_instance_type
      user_data = templatefile("${path.module}/fdb/node.sh.tftpl", {
        role            = "storage"
        packages        = local.fdb_packages
        cluster_param   = aws_ssm_parameter.cluster_file.name
        region          = local.region
        redundancy      = local.redundancy
        interfaces      = jsonencode(zipmap(var.availability_zones, aws_network_interface.storage[*].id))
        backup_url      = ""
        first_node_zone = var.availability_zones[0]
      })
    }
    stateless = {
      instance_type = var.fdb_stateless_instance_type
      user_data = templatefile("${path.module}/fdb/node.sh.tftpl", {
        role            = "stateless"
        packages        = local.fdb_packages
        cluster_param   = aws_ssm_parameter.cluster_file.name
        region          = local.region
        redundancy      = local.redundancy
        interfaces      = "{}"
        backup_url      = "blobstore://@s3.${local.region}.amazonaws.com/${local.backup_prefix}?bucket=${aws_s3_bucket.data.bucket}&region=${local.region}&sc=2"
        first_node_zone = ""
      })
    }
  }
  name_prefix   = "${var.name}-fdb-${each.key}-"
  image_id      = data.aws_ssm_parameter.al2023.value
  instance_type = each.value.instance_type
  user_data     = base64encode(each.value.user_data)
  iam_instance_profile {
    arn = aws_iam_instance_profile.fdb[each.key].arn
  }
  vpc_security_group_ids = [aws_security_group.fdb.id]
  metadata_options {
    http_tokens                 = "required" # IMDSv2 only
    http_endpoint               = "enabled"
    http_put_response_hop_limit = 1
  }
  monitoring {
    enabled = true
  }
  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = 30
      volume_type           = "gp3"
      encrypted             = true
      kms_key_id            = aws_kms_key.silt.arn
      delete_on_termination = true
    }
  }
  tag_specifications {
    resource_type = "instance"
    tags          = merge(local.tags, { Name = "${var.name}-fdb-${each.key}", "silt:fdb-role" = each.key })
  }
  tags = local.tags
}

# One group of exactly one storage node per zone: a replacement lands in the
# same zone and takes over the same interface, address and data role.
resource "aws_autoscaling_group" "fdb_storage" {
  count                     = local.az_count
  name_prefix               = "${var.name}-fdb-${var.availability_zones[count.index]}-"
  min_size                  = 1
  max_size                  = 1
  desired_capacity          = 1
  vpc_zone_identifier       = [aws_subnet.private[count.index].id]
  health_check_type         = "EC2"
  health_check_grace_period = 300
  launch_template {
    id      = aws_launch_template.fdb["storage"].id
    version = aws_launch_template.fdb["storage"].latest_version
  }
  tag {
    key                 = "silt:stack"
    value               = var.name
    propagate_at_launch = true
  }
}

resource "aws_autoscaling_group" "fdb_stateless" {
  name_prefix               = "${var.name}-fdb-stateless-"
  min_size                  = var.fdb_stateless_count
  max_size                  = var.fdb_stateless_count
  desired_capacity          = var.fdb_stateless_count
  vpc_zone_identifier       = aws_subnet.private[*].id
  health_check_type         = "EC2"
  health_check_grace_period = 300
  launch_template {
    id      = aws_launch_template.fdb["stateless"].id
    version = aws_launch_template.fdb["stateless"].latest_version
  }
  tag {
    key                 = "silt:stack"
    value               = var.name
    propagate_at_launch = true
  }
}
