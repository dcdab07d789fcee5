# dupdetect: multi-stage, CPU-only PyTorch, weights baked in, non-root.
#   docker build -t dupdetect .            (ResNet-50 weights downloaded at build time)
#   docker build --build-arg DUPDETECT_MODEL=efficientnet_lite0 -t dupdetect .   (no download)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only wheels from PyTorch's CPU index: ~0.2 GB instead of ~5 GB of CUDA libraries.
# Same versions as pyproject.toml pins (2.14.1+cpu satisfies ==2.14.1).
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
COPY migrations ./migrations
# The same install as the README and .ci/run, without -e (the wheel carries the migrations).
RUN pip install '.[test]'
ARG DUPDETECT_MODEL=resnet50
ENV TORCH_HOME=/opt/torch
RUN mkdir -p /opt/torch && DUPDETECT_MODEL=${DUPDETECT_MODEL} dupdetect weights download

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 dupdetect && mkdir /data && chown dupdetect /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/torch /opt/torch
WORKDIR /app
COPY pyproject.toml ./
COPY tests ./tests
COPY bench ./bench
ARG DUPDETECT_MODEL=resnet50
ENV PATH=/opt/venv/bin:$PATH TORCH_HOME=/opt/torch \
    DUPDETECT_MODEL=${DUPDETECT_MODEL} DUPDETECT_HOST=0.0.0.0 DUPDETECT_PORT=8000 \
    DUPDETECT_DATA_DIR=/data DUPDETECT_WEIGHTS_DOWNLOAD=false
USER dupdetect
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=2)"
CMD ["dupdetect", "serve"]
