# cnnq: one image for workers (CPU and GPU) and the dashboard.
# The CUDA runtime comes from the torch wheel; the NVIDIA container toolkit provides the driver.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CNNQ_HOME=/var/lib/cnnq \
    CNNQ_ARTIFACT_ROOT=/artifacts \
    CNNQ_DATA_ROOT=/data

RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY cnnq ./cnnq
RUN pip install torch==2.14.1 torchvision==0.29.1 && pip install .

RUN useradd --create-home --uid 1000 cnnq \
    && mkdir -p /var/lib/cnnq /artifacts /data \
    && chown -R cnnq /var/lib/cnnq /artifacts /data
USER cnnq

ENTRYPOINT ["cnnq"]
CMD ["worker", "--cpu"]
