# `srl-rlvr aws render CONFIG` writes generated.auto.tfvars.json from the run config (bucket, tiers,
# budget, the state machine and dashboard), so the config stays the one source of these settings.

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "emulator" {
  description = "Skip the credential and account checks an AWS emulator cannot answer (tests only)."
  type        = bool
  default     = false
}

variable "bucket" {
  description = "S3 bucket for datasets, checkpoints, models and reports (aws.bucket)."
  type        = string
}

variable "prefix" {
  description = "Key prefix in the bucket and name prefix of every resource (aws.prefix)."
  type        = string
  default     = "srl-rlvr"
}

variable "checkpoint_retention_days" {
  description = "Checkpoints of finished runs are deleted after this many days."
  type        = number
  default     = 30
}

variable "tiers" {
  description = "Per-tier SageMaker settings (aws.tiers), stored as SSM parameters the jobs are launched with."
  type = map(object({
    instance_type      = string
    instance_count     = number
    spot               = bool
    on_demand_fallback = bool
    max_run_hours      = number
    max_wait_hours     = number
    checkpoint_minutes = number
    price_per_hour     = number
  }))
  default = {
    gold   = { instance_type = "ml.g6.12xlarge", instance_count = 1, spot = true, on_demand_fallback = false, max_run_hours = 24, max_wait_hours = 48, checkpoint_minutes = 30, price_per_hour = 5.75 }
    silver = { instance_type = "ml.p5.48xlarge", instance_count = 1, spot = true, on_demand_fallback = true, max_run_hours = 24, max_wait_hours = 48, checkpoint_minutes = 30, price_per_hour = 113.07 }
    bronze = { instance_type = "ml.p5.48xlarge", instance_count = 3, spot = true, on_demand_fallback = false, max_run_hours = 24, max_wait_hours = 48, checkpoint_minutes = 30, price_per_hour = 113.07 }
  }
}

variable "model_package_group" {
  description = "SageMaker model package group mirroring the MLflow registry's versions with cost tags."
  type        = string
  default     = "srl-rlvr"
}

variable "state_machine_name" {
  type    = string
  default = "srl-rlvr-nightly-cascade"
}

variable "state_machine_definition" {
  description = "Amazon States Language from `srl-rlvr aws render`; empty: no state machine yet."
  type        = string
  default     = ""
}

variable "schedule" {
  description = "When the cascade runs (EventBridge schedule expression, UTC)."
  type        = string
  default     = "cron(0 2 * * ? *)"
}

variable "alarms" {
  description = "PutMetricAlarm specs from `srl-rlvr aws render` (cloud/cloudwatch.py alarm_specs)."
  type        = any
  default     = []
}

variable "dashboard_body" {
  description = "Dashboard JSON from `srl-rlvr aws render`; empty: no dashboard."
  type        = string
  default     = ""
}

variable "monthly_budget_usd" {
  type    = number
  default = 5000
}

variable "budget_alert_percent" {
  type    = number
  default = 80
}

variable "alert_email" {
  description = "Subscribed to the alert topic and the budget (aws.budget_email); empty: none."
  type        = string
  default     = ""
}
