# The compactor: one task. It holds a lease in the metadata store, so a
# second task during a deployment simply waits; nothing depends on there
# being exactly one.

locals {
  compactor_container = {
    name                   = "compactor"
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    command                = ["compactor", "--metadata", "fdb:"]
    environment = [
      { name = "SILT_OBJECT_STORE", value = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}" },
      { name = "SILT_COMPACTOR_INTERVAL_SECS", value = "60" },
      { name = "SILT_GC_GRACE_SECS", value = "3600" },
      { name = "SILT_STATE_DIR", value = "/run/silt" },
      { name = "SILT_LOG", value = "info" },
      { name = "AWS_REGION", value = local.region },
    ]
    secrets     = [{ name = "SILT_FDB_CLUSTER_FILE_CONTENT", valueFrom = aws_ssm_parameter.cluster_file.arn }]
    mountPoints = [{ sourceVolume = "run", containerPath = "/run/silt", readOnly = false }]
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.compactor.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "compactor"
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "compactor" {
  name              = "/silt/${var.name}/compactor"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.silt.arn
  tags              = local.tags
}

resource "aws_iam_role" "compactor" {
  name_prefix        = "${var.name}-compactor-"
  description        = "Silt compactor: read, write and delete objects under data/"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy" "compactor" {
  name   = "data-access"
  role   = aws_iam_role.compactor.id
  policy = data.aws_iam_policy_document.data_access.json
}

resource "aws_ecs_task_definition" "compactor" {
  family                   = "${var.name}-compactor"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = 1024
  memory                   = 2048
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.compactor.arn
  container_definitions    = jsonencode([local.compactor_container])
  volume {
    name = "run"
  }
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  tags = local.tags
}

resource "aws_security_group" "compactor" {
  name_prefix = "${var.name}-compactor-"
  description = "Silt compactor: no inbound; out to S3, FoundationDB and AWS APIs"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "compactor_https" {
  security_group_id = aws_security_group.compactor.id
  description       = "HTTPS to S3 (gateway endpoint), SSM, ECR and CloudWatch"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "compactor_fdb" {
  security_group_id            = aws_security_group.compactor.id
  description                  = "To FoundationDB"
  referenced_security_group_id = aws_security_group.fdb.id
  ip_protocol                  = "tcp"
  from_port                    = local.fdb_port_first
  to_port                      = local.fdb_port_last
}

resource "aws_ecs_service" "compactor" {
  name                               = "compactor"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.compactor.arn
  launch_type                        = "FARGATE"
  desired_count                      = 1
  deployment_minimum_healthy_percent = 0
  deployment_maximum_percent         = 200
  propagate_tags                     = "SERVICE"
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.compactor.id]
    assign_public_ip = false
  }
  tags = local.tags
}
