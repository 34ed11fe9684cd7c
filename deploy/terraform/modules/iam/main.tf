# Least privilege: the SageMaker role reads and writes only its prefix of the bucket, pulls only
# the project's image and writes its own logs and metrics; the state machine's role creates and
# watches only this project's jobs, passes only the SageMaker role, and publishes only to the alert
# topic.

variable "prefix" {
  type = string
}

variable "bucket_arn" {
  type = string
}

variable "key_prefix" {
  type = string
}

variable "repository_arn" {
  type = string
}

variable "alert_topic_arn" {
  type = string
}

variable "state_machine_name" {
  type = string
}

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account = data.aws_caller_identity.current.account_id
  region  = data.aws_region.current.name
  arn     = "arn:${data.aws_partition.current.partition}"
}

data "aws_iam_policy_document" "sagemaker_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["sagemaker.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "sagemaker" {
  name               = "${var.prefix}-sagemaker"
  assume_role_policy = data.aws_iam_policy_document.sagemaker_trust.json
}

data "aws_iam_policy_document" "sagemaker" {
  statement {
    sid       = "ListOwnPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.key_prefix}/*"]
    }
  }
  statement {
    sid       = "ReadWriteOwnPrefix"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["${var.bucket_arn}/${var.key_prefix}/*"]
  }
  statement {
    sid       = "PullImage"
    actions   = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
    resources = [var.repository_arn]
  }
  statement {
    sid       = "EcrLogin"
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"] # the action has no resource-level permissions
  }
  statement {
    sid       = "OwnLogs"
    actions   = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${local.arn}:logs:${local.region}:${local.account}:log-group:/aws/sagemaker/*"]
  }
  statement {
    sid       = "OwnMetrics"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"] # scoped by namespace below; the action has no resource-level permissions
    condition {
      test     = "StringLike"
      variable = "cloudwatch:namespace"
      values   = ["${var.prefix}*", "/aws/sagemaker/*"]
    }
  }
}

resource "aws_iam_role_policy" "sagemaker" {
  name   = "${var.prefix}-sagemaker"
  role   = aws_iam_role.sagemaker.id
  policy = data.aws_iam_policy_document.sagemaker.json
}

data "aws_iam_policy_document" "states_trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com", "events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "state_machine" {
  name               = "${var.prefix}-states"
  assume_role_policy = data.aws_iam_policy_document.states_trust.json
}

data "aws_iam_policy_document" "state_machine" {
  statement {
    sid = "OwnJobs"
    actions = [
      "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
      "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
      "sagemaker:AddTags",
    ]
    resources = [
      "${local.arn}:sagemaker:${local.region}:${local.account}:training-job/${var.prefix}-*",
      "${local.arn}:sagemaker:${local.region}:${local.account}:processing-job/${var.prefix}-*",
    ]
  }
  statement {
    sid       = "PassOnlyTheSageMakerRole"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.sagemaker.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["sagemaker.amazonaws.com"]
    }
  }
  statement {
    sid     = "SyncJobsThroughEvents" # what `.sync` tasks use to learn a job ended
    actions = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
    resources = [
      "${local.arn}:events:${local.region}:${local.account}:rule/StepFunctionsGetEventsForSageMakerTrainingJobsRule",
      "${local.arn}:events:${local.region}:${local.account}:rule/StepFunctionsGetEventsForSageMakerProcessingJobsRule",
    ]
  }
  statement {
    sid       = "Notify"
    actions   = ["sns:Publish"]
    resources = [var.alert_topic_arn]
  }
  statement {
    sid       = "ScheduleStartsTheCascade"
    actions   = ["states:StartExecution"]
    resources = ["${local.arn}:states:${local.region}:${local.account}:stateMachine:${var.state_machine_name}"]
  }
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "${var.prefix}-states"
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}

output "sagemaker_role_arn" {
  value = aws_iam_role.sagemaker.arn
}

output "state_machine_role_arn" {
  value = aws_iam_role.state_machine.arn
}
