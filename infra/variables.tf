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
