# Put these in the run config's aws: section (aws.role_arn, aws.state_machine_role_arn, ...).

output "bucket" {
  value = module.buckets.bucket
}

output "sagemaker_role_arn" {
  value = module.iam.sagemaker_role_arn
}

output "state_machine_role_arn" {
  value = module.iam.state_machine_role_arn
}

output "image_repository_url" {
  value = aws_ecr_repository.image.repository_url
}

output "notification_topic_arn" {
  value = aws_sns_topic.alerts.arn
}

output "state_machine_arn" {
  value = module.state_machine.arn
}

output "tier_parameters" {
  value = {
    gold   = module.sagemaker_gold_tier.parameter_name
    silver = module.sagemaker_silver_tier.parameter_name
    bronze = module.sagemaker_bronze_tier.parameter_name
  }
}

output "model_package_group_arn" {
  value = module.sagemaker_registry.arn
}
