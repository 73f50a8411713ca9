# Stateless agents: an ECS service on Fargate behind an HTTPS load balancer,
# scaled on CPU. Any task serves any partition; losing one loses nothing.

locals {
  # The container, as HCL so checks can read it (tests/test_drift.py compares
  # its flags and environment with `silt agent --help`).
  agent_container = {
    name                   = "agent"
    image                  = var.image
    essential              = true
    readonlyRootFilesystem = true
    user                   = "10001:10001"
    command                = ["agent", "--listen", "0.0.0.0:8080", "--metadata", "fdb:"]
    portMappings           = [{ containerPort = 8080, protocol = "tcp" }]
    environment = [
      { name = "SILT_OBJECT_STORE", value = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}" },
      { name = "SILT_FLUSH_INTERVAL_MS", value = tostring(var.agent_flush_interval_ms) },
      { name = "SILT_MAX_INFLIGHT_BYTES", value = tostring(floor(var.agent_memory * 1048576 / 4)) },
      { name = "SILT_CACHE_BYTES", value = tostring(floor(var.agent_memory * 1048576 / 4)) },
      { name = "SILT_SHUTDOWN_TIMEOUT_SECS", value = "25" },
      # Agents reach the commit sequencer (one of them) at its task address.
      { name = "SILT_ADVERTISE_URL", value = "http://{ip}:8080" },
      { name = "SILT_STATE_DIR", value = "/run/silt" },
      { name = "SILT_LOG", value = "info" },
      { name = "AWS_REGION", value = local.region },
    ]
    # Fetched from SSM by ECS when the task starts.
    secrets     = [{ name = "SILT_FDB_CLUSTER_FILE_CONTENT", valueFrom = aws_ssm_parameter.cluster_file.arn }]
    mountPoints = [{ sourceVolume = "run", containerPath = "/run/silt", readOnly = false }]
    stopTimeout = 30
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.agent.name
        awslogs-region        = local.region
        awslogs-stream-prefix = "agent"
      }
    }
  }
}

resource "aws_ecs_cluster" "this" {
  name = var.name
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
  tags = local.tags
}

resource "aws_cloudwatch_log_group" "agent" {
  name              = "/silt/${var.name}/agent"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.silt.arn
  tags              = local.tags
}

resource "aws_ecs_task_definition" "agent" {
  family                   = "${var.name}-agent"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.agent_cpu
  memory                   = var.agent_memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.agent.arn
  container_definitions    = jsonencode([local.agent_container])
  volume {
    name = "run"
  }
  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }
  tags = local.tags
}

resource "aws_security_group" "lb" {
  name_prefix = "${var.name}-lb-"
  description = "Silt load balancer: HTTPS from the allowed networks"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "lb_https" {
  for_each          = toset(var.allowed_cidrs)
  security_group_id = aws_security_group.lb.id
  description       = "HTTPS from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_vpc_security_group_egress_rule" "lb_to_agents" {
  security_group_id            = aws_security_group.lb.id
  description                  = "To the agents' HTTP port"
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
}

resource "aws_security_group" "agent" {
  name_prefix = "${var.name}-agent-"
  description = "Silt agents: HTTP from the load balancer; out to S3, FoundationDB and AWS APIs"
  vpc_id      = aws_vpc.this.id
  tags        = local.tags
  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_ingress_rule" "agent_from_lb" {
  security_group_id            = aws_security_group.agent.id
  description                  = "HTTP from the load balancer"
  referenced_security_group_id = aws_security_group.lb.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
}

# Agents send their segment commits to the elected sequencer, another agent.
resource "aws_vpc_security_group_ingress_rule" "agent_from_agent" {
  security_group_id            = aws_security_group.agent.id
  description                  = "HTTP from other agents (the commit sequencer's intake)"
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
}

resource "aws_vpc_security_group_egress_rule" "agent_to_agent" {
  security_group_id            = aws_security_group.agent.id
  description                  = "HTTP to other agents (the commit sequencer)"
  referenced_security_group_id = aws_security_group.agent.id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8080
}

resource "aws_vpc_security_group_egress_rule" "agent_https" {
  security_group_id = aws_security_group.agent.id
  description       = "HTTPS to S3 (gateway endpoint), SSM, ECR and CloudWatch"
  cidr_ipv4         = "0.0.0.0/0"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs need a separate SSE-S3 bucket (ALB cannot write KMS-encrypted logs); request metrics come from CloudWatch and the agents' /metrics. Enable per deployment when required.
  #checkov:skip=CKV2_AWS_28:A WAF in front of a data-plane API adds latency and cost; access is restricted by allowed_cidrs. Attach one per deployment when exposed to the internet.
  name_prefix                = substr(var.name, 0, 6)
  load_balancer_type         = "application"
  internal                   = var.internal_load_balancer
  security_groups            = [aws_security_group.lb.id]
  subnets                    = var.internal_load_balancer ? aws_subnet.private[*].id : aws_subnet.public[*].id
  drop_invalid_header_fields = true
  enable_deletion_protection = true
  idle_timeout               = 120 # long-polls wait up to 60 s
  tags                       = local.tags
}

resource "aws_lb_target_group" "agent" {
  name_prefix          = substr(var.name, 0, 6)
  port                 = 8080
  protocol             = "HTTP"
  target_type          = "ip"
  vpc_id               = aws_vpc.this.id
  deregistration_delay = 30 # matches the agents' drain on SIGTERM
  health_check {
    path                = "/healthz"
    matcher             = "200"
    interval            = 10
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
  tags = local.tags
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.this.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = "ELBSecurityPolicy-TLS13-1-2-2021-06"
  certificate_arn   = var.certificate_arn
  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.agent.arn
  }
  tags = local.tags
}

resource "aws_ecs_service" "agent" {
  name                               = "agent"
  cluster                            = aws_ecs_cluster.this.id
  task_definition                    = aws_ecs_task_definition.agent.arn
  launch_type                        = "FARGATE"
  desired_count                      = var.agent_min_count
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = 30
  propagate_tags                     = "SERVICE"
  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }
  network_configuration {
    subnets          = aws_subnet.private[*].id
    security_groups  = [aws_security_group.agent.id]
    assign_public_ip = false
  }
  load_balancer {
    target_group_arn = aws_lb_target_group.agent.arn
    container_name   = "agent"
    container_port   = 8080
  }
  lifecycle {
    ignore_changes = [desired_count] # owned by autoscaling
  }
  depends_on = [aws_lb_listener.https]
  tags       = local.tags
}

resource "aws_appautoscaling_target" "agent" {
  service_namespace  = "ecs"
  resource_id        = "service/${aws_ecs_cluster.this.name}/${aws_ecs_service.agent.name}"
  scalable_dimension = "ecs:service:DesiredCount"
  min_capacity       = var.agent_min_count
  max_capacity       = var.agent_max_count
}

resource "aws_appautoscaling_policy" "agent_cpu" {
  name               = "${var.name}-agent-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.agent.service_namespace
  resource_id        = aws_appautoscaling_target.agent.resource_id
  scalable_dimension = aws_appautoscaling_target.agent.scalable_dimension
  target_tracking_scaling_policy_configuration {
    target_value       = var.agent_cpu_target
    scale_out_cooldown = 60
    # Scale in slowly: a removed agent's cache goes with it, and traffic is bursty.
    scale_in_cooldown = 900
    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
