# The image SageMaker runs for `srl-rlvr aws train`, `aws validate-data` and the nightly cascade.
# Building and pushing it is your step (docs/aws.md):
#
#   aws ecr get-login-password | docker login --username AWS --password-stdin 763104351884.dkr.ecr.us-east-1.amazonaws.com
#   docker build -t srl-rlvr .
#   docker tag srl-rlvr "$(terraform -chdir=deploy/terraform output -raw image_repository_url):latest"
#   docker push "$(terraform -chdir=deploy/terraform output -raw image_repository_url):latest"
#
# The base is an AWS Deep Learning Container for PyTorch training (CUDA, NCCL and EFA for
# multi-node, the SM_* environment): pick a current tag from
# https://github.com/aws/deep-learning-containers/blob/master/available_images.md and keep its torch
# (pip leaves a satisfying torch alone).
ARG BASE_IMAGE=763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-gpu-py312-cu126-ubuntu22.04-sagemaker
FROM ${BASE_IMAGE}

WORKDIR /opt/srl-rlvr
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[aws]"

# Log lines reach CloudWatch as they are written (the EMF metric lines among them).
ENV PYTHONUNBUFFERED=1
# Training jobs run the entry point (it reads SageMaker's environment and resumes from
# /opt/ml/checkpoints); processing jobs override it with `srl-rlvr ...`.
ENTRYPOINT ["python", "-m", "srl_rlvr.cloud.entry_point"]
