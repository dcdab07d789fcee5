# dupdetect: multi-stage, CPU-only PyTorch, weights baked in, non-root.
#   docker build -t dupdetect .            (ResNet-50 weights downloaded at build time)
#   docker build --build-arg DUPDETECT_MODEL=efficientnet_lite0 -t dupdetect .   (no download)
#   docker build --target test -t dupdetect-test . && docker run --rm dupdetect-test   (the tests)
# The model is part of the image (label org.dupdetect.model): an image built for another model
# refuses to start on a data volume holding this one's vectors, and says what to do.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# CPU-only wheels from PyTorch's CPU index: ~0.2 GB instead of ~5 GB of CUDA libraries.
# Same versions as pyproject.toml pins (2.14.1+cpu satisfies ==2.14.1).
RUN pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
COPY migrations ./migrations
# The README's install without -e (the wheel carries the migrations) and without test tools.
RUN pip install .
ARG DUPDETECT_MODEL=resnet50
ENV TORCH_HOME=/opt/torch
RUN mkdir -p /opt/torch && DUPDETECT_MODEL=${DUPDETECT_MODEL} dupdetect weights download

FROM build AS build-test
RUN pip install '.[test]'

FROM python:3.11-slim AS app
RUN useradd --create-home --uid 10001 dupdetect && mkdir /data && chown dupdetect /data
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/torch /opt/torch
WORKDIR /app
ARG DUPDETECT_MODEL=resnet50
LABEL org.dupdetect.model=${DUPDETECT_MODEL}
ENV PATH=/opt/venv/bin:$PATH TORCH_HOME=/opt/torch \
    DUPDETECT_MODEL=${DUPDETECT_MODEL} DUPDETECT_HOST=0.0.0.0 DUPDETECT_PORT=8000 \
    DUPDETECT_DATA_DIR=/data DUPDETECT_WEIGHTS_DOWNLOAD=false
USER dupdetect
VOLUME /data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD python -c 'import os, urllib.request; urllib.request.urlopen("http://127.0.0.1:%s/ready" % os.environ.get("DUPDETECT_PORT", "8000"), timeout=2)'
CMD ["dupdetect", "serve"]

# The test suite in the same environment, with the test tools; not part of the runtime image.
FROM app AS test
COPY --from=build-test /opt/venv /opt/venv
COPY --chown=dupdetect pyproject.toml ./
COPY --chown=dupdetect tests ./tests
COPY --chown=dupdetect bench ./bench
CMD ["python", "-m", "pytest", "-p", "no:cacheprovider"]

# The default target: the runtime image.
FROM app
