# The nightly cascade: the Amazon States Language from `srl-rlvr aws render` (generated from code,
# cloud/state_machine.py), with the ARNs Terraform created filled in, started by an EventBridge
# schedule.

variable "name" {
  type = string
}

variable "prefix" {
  type = string
}

variable "definition" {
  type = string
}

variable "role_arn" {
  type = string
}

variable "sagemaker_role_arn" {
  type = string
}

variable "image_uri" {
  type = string
}

variable "alert_topic_arn" {
  type = string
}

variable "schedule" {
  type = string
}

locals {
  enabled = var.definition != ""
  # placeholders `srl-rlvr aws render` writes where the config does not name these yet
  definition = replace(replace(replace(var.definition,
    "@@SAGEMAKER_ROLE_ARN@@", var.sagemaker_role_arn),
    "@@IMAGE_URI@@", var.image_uri),
  "@@ALERT_TOPIC_ARN@@", var.alert_topic_arn)
}

resource "aws_sfn_state_machine" "cascade" {
  count      = local.enabled ? 1 : 0
  name       = var.name
  role_arn   = var.role_arn
  definition = local.definition
}

resource "aws_cloudwatch_event_rule" "nightly" {
  count               = local.enabled ? 1 : 0
  name                = "${var.prefix}-nightly-cascade"
  schedule_expression = var.schedule
}

resource "aws_cloudwatch_event_target" "nightly" {
  count    = local.enabled ? 1 : 0
  rule     = aws_cloudwatch_event_rule.nightly[0].name
  arn      = aws_sfn_state_machine.cascade[0].arn
  role_arn = var.role_arn
}

output "arn" {
  value = local.enabled ? aws_sfn_state_machine.cascade[0].arn : null
}
