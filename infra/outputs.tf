output "bucket" {
  description = "The S3 bucket holding segments, the Parquet archive and FoundationDB backups."
  value       = aws_s3_bucket.data.bucket
}

output "archive_path" {
  description = "Where the compactor writes the Parquet archive (Hive layout: topic=<t>/partition=<p>/)."
  value       = "s3://${aws_s3_bucket.data.bucket}/${local.data_prefix}/archive/"
}

output "kms_key_arn" {
  description = "The customer-managed KMS key encrypting the bucket and the logs."
  value       = aws_kms_key.silt.arn
}

output "vpc_id" {
  description = "The VPC Silt runs in."
  value       = aws_vpc.this.id
}

output "express_bucket" {
  description = "The S3 Express One Zone directory bucket, when enabled."
  value       = var.enable_express_one_zone ? aws_s3_directory_bucket.express[0].bucket : null
}

output "endpoint_url" {
  description = "The HTTPS endpoint of the Silt API (point a DNS name covered by the certificate at it)."
  value       = "https://${aws_lb.this.dns_name}"
}

output "glue_table" {
  description = "The Glue table over the archive, as database.table (Athena, Spark on EMR)."
  value       = "${aws_glue_catalog_database.archive.name}.${aws_glue_catalog_table.records.name}"
}

output "cluster_file_parameter" {
  description = "SSM parameter holding the FoundationDB cluster file."
  value       = aws_ssm_parameter.cluster_file.name
}

output "image_repository" {
  description = "ECR repository to push the silt image to (tags are immutable)."
  value       = aws_ecr_repository.silt.repository_url
}
