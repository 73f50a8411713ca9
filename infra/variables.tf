variable "name" {
  description = "Name of this deployment; prefixes every resource. Lowercase letters, digits and dashes."
  type        = string
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{2,20}$", var.name))
    error_message = "name must be 3-21 characters: a lowercase letter, then lowercase letters, digits or dashes."
  }
}

variable "availability_zones" {
  description = "Availability zones to spread over (one FoundationDB storage node each). Three or four give redundancy `double`; five or more give `triple`."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) >= 3 && length(var.availability_zones) <= 6 && length(distinct(var.availability_zones)) == length(var.availability_zones)
    error_message = "Give 3 to 6 distinct availability zones."
  }
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC. Each availability zone gets a /20 private and a /24 public subnet carved from it."
  type        = string
  default     = "10.40.0.0/16"
  validation {
    condition     = can(cidrhost(var.vpc_cidr, 0)) && tonumber(split("/", var.vpc_cidr)[1]) <= 16
    error_message = "vpc_cidr must be a valid IPv4 CIDR block of size /16 or larger."
  }
}

variable "tags" {
  description = "Extra tags for every resource."
  type        = map(string)
  default     = {}
  validation {
    condition     = alltrue([for k, v in var.tags : length(k) > 0 && length(k) <= 128 && length(v) <= 256 && !startswith(k, "aws:")])
    error_message = "Tag keys must be 1-128 characters and not start with aws:; values at most 256 characters."
  }
}

variable "log_retention_days" {
  description = "How long CloudWatch keeps agent, compactor and VPC flow logs."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a retention period CloudWatch Logs accepts (e.g. 30, 90, 365)."
  }
}

variable "enable_express_one_zone" {
  description = "Also create an S3 Express One Zone directory bucket for low-latency segments (single AZ: trade durability across AZs for single-digit-millisecond PUTs)."
  type        = bool
  default     = false
}

variable "express_one_zone_az_id" {
  description = "Availability zone ID (e.g. use1-az4) of the Express One Zone directory bucket. Required when enable_express_one_zone is true."
  type        = string
  default     = ""
  validation {
    condition     = var.express_one_zone_az_id == "" || can(regex("^[a-z]{3,4}[0-9]-az[0-9]+$", var.express_one_zone_az_id))
    error_message = "express_one_zone_az_id must look like use1-az4."
  }
}

variable "image" {
  description = "Container image of the `silt` binary (built from infra/Dockerfile, with FoundationDB support), e.g. <account>.dkr.ecr.<region>.amazonaws.com/silt:0.1.0."
  type        = string
  validation {
    condition     = can(regex("^[^\\s]+:[^\\s]+$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image must name an explicit tag (not :latest) so deployments are reproducible."
  }
}

variable "certificate_arn" {
  description = "ACM certificate for the load balancer's HTTPS listener (the endpoint is HTTPS only)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:acm:", var.certificate_arn))
    error_message = "certificate_arn must be an ACM certificate ARN."
  }
}

variable "internal_load_balancer" {
  description = "Put the load balancer inside the VPC only (producers and consumers in the VPC or peered networks). When false it is internet-facing, reachable from allowed_cidrs."
  type        = bool
  default     = false
}

variable "allowed_cidrs" {
  description = "CIDR blocks that may reach the HTTPS endpoint."
  type        = list(string)
  validation {
    condition     = length(var.allowed_cidrs) > 0 && alltrue([for c in var.allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "Give at least one valid CIDR block (a whole-internet endpoint must say 0.0.0.0/0 explicitly)."
  }
}

variable "agent_cpu" {
  description = "Fargate CPU units per agent task (1024 = 1 vCPU). Produce throughput scales with CPU (JSON parsing and batch encoding)."
  type        = number
  default     = 2048
  validation {
    condition     = contains([512, 1024, 2048, 4096, 8192, 16384], var.agent_cpu)
    error_message = "agent_cpu must be a Fargate CPU size: 512, 1024, 2048, 4096, 8192 or 16384."
  }
}

variable "agent_memory" {
  description = "Fargate memory (MiB) per agent task. Must hold max-inflight-bytes + cache-bytes with headroom."
  type        = number
  default     = 4096
  validation {
    condition     = var.agent_memory >= 1024 && var.agent_memory <= 122880
    error_message = "agent_memory must be between 1024 and 122880 MiB."
  }
}

variable "agent_min_count" {
  description = "Fewest agent tasks. At least 3, one per zone, so a zone outage leaves capacity."
  type        = number
  default     = 3
  validation {
    condition     = var.agent_min_count >= 3
    error_message = "agent_min_count must be at least 3."
  }
}

variable "agent_max_count" {
  description = "Most agent tasks autoscaling may run."
  type        = number
  default     = 24
  validation {
    condition     = var.agent_max_count >= 3 && var.agent_max_count <= 500
    error_message = "agent_max_count must be between 3 and 500."
  }
}

variable "agent_cpu_target" {
  description = "Average CPU utilization (%) autoscaling keeps the agents at. 50-60 leaves headroom for bursts while new tasks start."
  type        = number
  default     = 55
  validation {
    condition     = var.agent_cpu_target >= 50 && var.agent_cpu_target <= 60
    error_message = "agent_cpu_target must be between 50 and 60."
  }
}

variable "agent_flush_interval_ms" {
  description = "Longest a produced record waits for its segment (silt --flush-interval-ms). Lower: lower latency, more S3 PUTs."
  type        = number
  default     = 20
  validation {
    condition     = var.agent_flush_interval_ms >= 1 && var.agent_flush_interval_ms <= 1000
    error_message = "agent_flush_interval_ms must be between 1 and 1000."
  }
}

variable "fdb_version" {
  description = "FoundationDB version installed on the cluster nodes (the agents' client library must speak it: the image builds against API 7.3)."
  type        = string
  default     = "7.3.63"
  validation {
    condition     = can(regex("^7\\.3\\.[0-9]+$", var.fdb_version))
    error_message = "fdb_version must be a 7.3.x release (the client API the image is built for)."
  }
}

variable "fdb_server_rpm_sha256" {
  description = "SHA-256 of foundationdb-server-<version>-1.el7.x86_64.rpm, from the release checksums; nodes refuse a package that does not match."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.fdb_server_rpm_sha256))
    error_message = "fdb_server_rpm_sha256 must be 64 lowercase hex digits."
  }
}

variable "fdb_clients_rpm_sha256" {
  description = "SHA-256 of foundationdb-clients-<version>-1.el7.x86_64.rpm."
  type        = string
  validation {
    condition     = can(regex("^[0-9a-f]{64}$", var.fdb_clients_rpm_sha256))
    error_message = "fdb_clients_rpm_sha256 must be 64 lowercase hex digits."
  }
}

variable "fdb_storage_instance_type" {
  description = "Instance type of the storage/log nodes (one per zone). Must have local NVMe storage, where FoundationDB keeps its data."
  type        = string
  default     = "i4i.xlarge"
  validation {
    condition     = can(regex("^(i3|i3en|i4i|i4g|i7i|i7ie|im4gn|is4gen|[cmrx][5-8][a-z]*d[a-z]*)\\.", var.fdb_storage_instance_type))
    error_message = "fdb_storage_instance_type must be an NVMe instance-storage type (i3, i3en, i4i, im4gn, is4gen, or a *d type such as m6id)."
  }
}

variable "fdb_stateless_instance_type" {
  description = "Instance type of the stateless FoundationDB processes (proxies, resolvers) and the backup agents."
  type        = string
  default     = "c6i.large"
  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*\\.[a-z0-9]+$", var.fdb_stateless_instance_type))
    error_message = "fdb_stateless_instance_type must be an EC2 instance type such as c6i.large."
  }
}

variable "fdb_stateless_count" {
  description = "Instances running stateless FoundationDB processes and backup agents. Scale with commit throughput."
  type        = number
  default     = 2
  validation {
    condition     = var.fdb_stateless_count >= 2 && var.fdb_stateless_count <= 50
    error_message = "fdb_stateless_count must be between 2 and 50."
  }
}
