terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40, < 6.0"
    }
  }
}

provider "aws" {
  region = var.region

  # An emulator (the tests' moto server, via AWS_ENDPOINT_URL) has no real account to check.
  skip_credentials_validation = var.emulator
  skip_requesting_account_id  = var.emulator
  skip_metadata_api_check     = var.emulator
  s3_use_path_style           = var.emulator
  # an emulator answers what it lacks with errors the provider would retry for minutes
  max_retries = var.emulator ? 1 : 25

  default_tags {
    tags = { project = "srl-rlvr" }
  }
}
