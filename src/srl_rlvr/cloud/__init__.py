"""Running on AWS (the `aws` extra): S3 paths, SageMaker training and processing jobs and the entry
point inside them, the nightly cascade on Step Functions, CloudWatch metrics, alarms and budget.

Every module imports boto3 inside its functions, so the CLI and the rest of the package work without
the extra installed.
"""
