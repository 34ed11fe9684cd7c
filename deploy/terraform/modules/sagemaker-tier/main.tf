# One training tier (the plan's sagemaker-gold-tier, -silver-tier, -bronze-tier): its machines, spot
# share and checkpoint interval, kept as an SSM parameter so operators can read what a tier launches
# with. The jobs come from `srl-rlvr aws train --tier` and the state machine (SageMaker training jobs
# are runs, which Terraform does not model).

variable "tier" {
  type = string
  validation {
    condition     = contains(["gold", "silver", "bronze"], var.tier)
    error_message = "tier: one of gold, silver, bronze."
  }
}

variable "prefix" {
  type = string
}

variable "checkpoint_uri" {
  type = string
}

variable "settings" {
  type = object({
    instance_type      = string
    instance_count     = number
    spot               = bool
    on_demand_fallback = bool
    max_run_hours      = number
    max_wait_hours     = number
    checkpoint_minutes = number
    price_per_hour     = number
  })
  validation {
    condition     = !var.settings.spot || var.settings.max_wait_hours >= var.settings.max_run_hours
    error_message = "max_wait_hours must be at least max_run_hours: a spot job's wait includes its run time."
  }
  validation {
    condition     = var.settings.instance_count >= 1 && var.settings.checkpoint_minutes > 0
    error_message = "instance_count >= 1 and checkpoint_minutes > 0."
  }
}

resource "aws_ssm_parameter" "settings" {
  name = "/${var.prefix}/tiers/${var.tier}"
  type = "String"
  value = jsonencode(merge(var.settings, {
    distributed    = var.settings.instance_count > 1 ? "fsdp2 over ${var.settings.instance_count} nodes" : "one node"
    checkpoint_uri = "${var.checkpoint_uri}/"
  }))
}

output "parameter_name" {
  value = aws_ssm_parameter.settings.name
}
