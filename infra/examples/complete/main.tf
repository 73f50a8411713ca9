# A complete deployment: `terraform init && terraform apply` in an empty
# account (see infra/README.md for prerequisites, first produce/consume,
# teardown and costs).

terraform {
  required_version = ">= 1.6.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "us-east-1"
}

provider "aws" {
  region = var.region
}

module "silt" {
  source             = "../.."
  name               = "demo"
  availability_zones = ["${var.region}a", "${var.region}b", "${var.region}c"]
}

output "bucket" {
  description = "Where segments and the archive live."
  value       = module.silt.bucket
}

output "archive_path" {
  description = "The Parquet archive, for Spark, Athena and DuckDB."
  value       = module.silt.archive_path
}
