# The AWS side of srl-rlvr: the plan's modules (buckets and roles, a SageMaker module per tier, the
# registry, the nightly state machine, alarms, dashboard and budget). Training jobs themselves are
# launched by `srl-rlvr aws train` and the state machine, not by Terraform: they are runs, not
# infrastructure.

module "buckets" {
  source         = "./modules/buckets"
  bucket         = var.bucket
  prefix         = var.prefix
  retention_days = var.checkpoint_retention_days
}

resource "aws_sns_topic" "alerts" {
  name = "${var.prefix}-alerts"
}

resource "aws_sns_topic_subscription" "email" {
  count     = var.alert_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = var.alert_email
}

resource "aws_ecr_repository" "image" {
  name                 = var.prefix
  image_tag_mutability = "MUTABLE"
  image_scanning_configuration {
    scan_on_push = true
  }
}

module "iam" {
  source             = "./modules/iam"
  prefix             = var.prefix
  bucket_arn         = module.buckets.bucket_arn
  key_prefix         = var.prefix
  repository_arn     = aws_ecr_repository.image.arn
  alert_topic_arn    = aws_sns_topic.alerts.arn
  state_machine_name = var.state_machine_name
}

module "sagemaker_gold_tier" {
  source         = "./modules/sagemaker-tier"
  tier           = "gold"
  prefix         = var.prefix
  settings       = var.tiers["gold"]
  checkpoint_uri = "s3://${var.bucket}/${var.prefix}/checkpoints"
}

module "sagemaker_silver_tier" {
  source         = "./modules/sagemaker-tier"
  tier           = "silver"
  prefix         = var.prefix
  settings       = var.tiers["silver"]
  checkpoint_uri = "s3://${var.bucket}/${var.prefix}/checkpoints"
}

module "sagemaker_bronze_tier" {
  source         = "./modules/sagemaker-tier"
  tier           = "bronze"
  prefix         = var.prefix
  settings       = var.tiers["bronze"]
  checkpoint_uri = "s3://${var.bucket}/${var.prefix}/checkpoints"
}

module "sagemaker_registry" {
  source = "./modules/sagemaker-registry"
  name   = var.model_package_group
}

module "state_machine" {
  source             = "./modules/state-machine"
  name               = var.state_machine_name
  prefix             = var.prefix
  definition         = var.state_machine_definition
  role_arn           = module.iam.state_machine_role_arn
  sagemaker_role_arn = module.iam.sagemaker_role_arn
  image_uri          = "${aws_ecr_repository.image.repository_url}:latest"
  alert_topic_arn    = aws_sns_topic.alerts.arn
  schedule           = var.schedule
}

module "monitoring" {
  source               = "./modules/monitoring"
  prefix               = var.prefix
  alarms               = var.alarms
  dashboard_body       = var.dashboard_body
  alert_topic_arn      = aws_sns_topic.alerts.arn
  monthly_budget_usd   = var.monthly_budget_usd
  budget_alert_percent = var.budget_alert_percent
  alert_email          = var.alert_email
}

data "aws_iam_policy_document" "alerts" {
  statement {
    sid       = "AlarmsBudgetsAndEventsMayPublish"
    actions   = ["sns:Publish"]
    resources = [aws_sns_topic.alerts.arn]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com", "budgets.amazonaws.com", "events.amazonaws.com"]
    }
  }
}

resource "aws_sns_topic_policy" "alerts" {
  arn    = aws_sns_topic.alerts.arn
  policy = data.aws_iam_policy_document.alerts.json
}
