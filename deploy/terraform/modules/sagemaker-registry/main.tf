# The SageMaker model registry's group for srl-rlvr models; MLflow stays the registry of record
# (versions, lineage, aliases), this group is where AWS-side tools find them with cost and
# performance tags.

variable "name" {
  type = string
}

resource "aws_sagemaker_model_package_group" "this" {
  model_package_group_name        = var.name
  model_package_group_description = "srl-rlvr models; versions tagged with training_cost_usd and the evaluation's metrics"
}

output "arn" {
  value = aws_sagemaker_model_package_group.this.arn
}
