# Where the silt image lives. Tags are immutable: a tag names one build.
resource "aws_ecr_repository" "silt" {
  name                 = "silt-${var.name}"
  image_tag_mutability = "IMMUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.silt.arn
  }
  tags = local.tags
}

resource "aws_ecr_lifecycle_policy" "silt" {
  repository = aws_ecr_repository.silt.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "Keep the 50 most recent images"
      selection    = { tagStatus = "any", countType = "imageCountMoreThan", countNumber = 50 }
      action       = { type = "expire" }
    }]
  })
}
