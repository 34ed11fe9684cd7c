# Alarms and the dashboard as `srl-rlvr aws render` builds them (cloud/cloudwatch.py: a failed
# cascade, accuracy drop, drift and latency per tier, estimated charges), the monthly budget, and
# failed training jobs reported to the alert topic.

variable "prefix" {
  type = string
}

variable "alarms" {
  type = any
}

variable "dashboard_body" {
  type = string
}

variable "alert_topic_arn" {
  type = string
}

variable "monthly_budget_usd" {
  type = number
}

variable "budget_alert_percent" {
  type = number
}

variable "alert_email" {
  type = string
}

data "aws_caller_identity" "current" {}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each            = { for a in var.alarms : a.AlarmName => a }
  alarm_name          = each.key
  alarm_description   = each.value.AlarmDescription
  namespace           = each.value.Namespace
  metric_name         = each.value.MetricName
  dimensions          = { for d in each.value.Dimensions : d.Name => replace(d.Value, "{account}", data.aws_caller_identity.current.account_id) }
  period              = each.value.Period
  evaluation_periods  = each.value.EvaluationPeriods
  threshold           = each.value.Threshold
  comparison_operator = each.value.ComparisonOperator
  treat_missing_data  = each.value.TreatMissingData
  statistic           = lookup(each.value, "Statistic", null)
  extended_statistic  = lookup(each.value, "ExtendedStatistic", null)
  alarm_actions       = [var.alert_topic_arn]
}

resource "aws_cloudwatch_dashboard" "this" {
  count          = var.dashboard_body == "" ? 0 : 1
  dashboard_name = "${var.prefix}-training-cost-performance"
  dashboard_body = var.dashboard_body
}

resource "aws_budgets_budget" "monthly" {
  account_id   = data.aws_caller_identity.current.account_id
  name         = "${var.prefix}-monthly"
  budget_type  = "COST"
  limit_amount = format("%.2f", var.monthly_budget_usd)
  limit_unit   = "USD"
  time_unit    = "MONTHLY"

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = var.budget_alert_percent
    threshold_type             = "PERCENTAGE"
    notification_type          = "ACTUAL"
    subscriber_sns_topic_arns  = [var.alert_topic_arn]
    subscriber_email_addresses = var.alert_email == "" ? [] : [var.alert_email]
  }

  notification {
    comparison_operator        = "GREATER_THAN"
    threshold                  = 100
    threshold_type             = "PERCENTAGE"
    notification_type          = "FORECASTED"
    subscriber_sns_topic_arns  = [var.alert_topic_arn]
    subscriber_email_addresses = var.alert_email == "" ? [] : [var.alert_email]
  }
}

resource "aws_cloudwatch_event_rule" "failed_training_job" {
  name = "${var.prefix}-failed-training-job"
  event_pattern = jsonencode({
    source      = ["aws.sagemaker"]
    detail-type = ["SageMaker Training Job State Change"]
    detail      = { TrainingJobStatus = ["Failed"], TrainingJobName = [{ prefix = var.prefix }] }
  })
}

resource "aws_cloudwatch_event_target" "failed_training_job" {
  rule = aws_cloudwatch_event_rule.failed_training_job.name
  arn  = var.alert_topic_arn
}
