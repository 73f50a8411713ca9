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

variable "image" {
  description = "The silt image in your registry, built from infra/Dockerfile (e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/silt:0.1.0)."
  type        = string
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS endpoint."
  type        = string
}

variable "allowed_cidrs" {
  description = "Networks allowed to reach the endpoint."
  type        = list(string)
}

variable "fdb_server_rpm_sha256" {
  description = "SHA-256 of foundationdb-server-7.3.63-1.el7.x86_64.rpm (from the FoundationDB release page)."
  type        = string
}

variable "fdb_clients_rpm_sha256" {
  description = "SHA-256 of foundationdb-clients-7.3.63-1.el7.x86_64.rpm."
  type        = string
}

provider "aws" {
  region = var.region
}

module "silt" {
  source                 = "../.."
  name                   = "demo"
  availability_zones     = ["${var.region}a", "${var.region}b", "${var.region}c"]
  image                  = var.image
  certificate_arn        = var.certificate_arn
  allowed_cidrs          = var.allowed_cidrs
  fdb_server_rpm_sha256  = var.fdb_server_rpm_sha256
  fdb_clients_rpm_sha256 = var.fdb_clients_rpm_sha256
}

output "endpoint_url" {
  description = "The HTTPS endpoint."
  value       = module.silt.endpoint_url
}

output "bucket" {
  description = "Where segments and the archive live."
  value       = module.silt.bucket
}

output "archive_path" {
  description = "The Parquet archive, for Spark, Athena and DuckDB."
  value       = module.silt.archive_path
}

output "image_repository" {
  description = "Push the silt image here."
  value       = module.silt.image_repository
}
