"""HTTP ingest of the real service against the bare model, in one run.

    python bench/ingest.py [--models efficientnet_lite0,resnet50] [--runtimes auto] [--clients 8] [--per-request 16]
                           [--seconds 30] [--decode-workers 0] [--batch-size 16]

For each model: the bare model's img/s (``Embedder.predict`` on ready-made pixels, the
service's batch size), then ``dupdetect serve`` in its own process (embedded PostgreSQL, as a
user starts it) under ``--clients`` concurrent clients posting ``--per-request`` real photos a
request (multipart), and the ratio between the two. Photos: the shared nature photos (~2–5 MP
JPEGs) and scikit-image's, as bench/embed.py collects them. ResNet weights cannot be downloaded
offline: ResNets run with random weights (speed only). Runs on CUDA when torch sees a GPU.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import bare_rate, mixed_set, table, weights_file  # noqa: E402
from dupdetect.embedding.model import Embedder  # noqa: E402
from dupdetect.settings import ModelSettings  # noqa: E402
from tests.processes import cli_env, free_port, start_serve, wait_ready  # noqa: E402


async def http_rate(base_url: str, photos: list[bytes], clients: int, per_request: int, seconds: float) -> float:
    added = 0

    async def client(n: int, session: aiohttp.ClientSession, deadline: float) -> None:
        nonlocal added
        i = n
        while time.perf_counter() < deadline:
            form = aiohttp.FormData()
            for k in range(per_request):
                form.add_field("files", photos[(i + k) % len(photos)], filename=f"{i}-{k}.jpg")
            i += clients
            async with session.post(f"{base_url}/images", data=form) as resp:
                body = await resp.json()
                if resp.status == 201:
                    added += body["added"]

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        await asyncio.gather(*(client(n, session, time.perf_counter() + 3) for n in range(clients)))  # warm-up
        added = 0
        started = time.perf_counter()
        await asyncio.gather(*(client(n, session, started + seconds) for n in range(clients)))
        return added / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-request", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--decode-workers", type=int, default=0, help="0: one per core (the default)")
    parser.add_argument("--batch-size", type=int, default=ModelSettings().batch_size)
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the service; 0: one per core")
    parser.add_argument("--runtimes", default="auto", help="DUPDETECT_RUNTIME values to compare (auto,torch,onnx)")
    parser.add_argument("--no-geometric-check", action="store_true", help="DUPDETECT_GEOMETRIC_CHECK=false")
    args = parser.parse_args()
    photos = mixed_set(64)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    rows = []
    with tempfile.TemporaryDirectory(prefix="dupdetect-bench-ingest-") as tmp:
        for model in args.models.split(","):
            weights, kind = weights_file(model, Path(tmp))
            for runtime in args.runtimes.split(","):
                settings = ModelSettings(model=model, weights_file=weights, batch_size=args.batch_size, runtime=runtime)
                embedder = Embedder(settings)
                embedder.load()
                bare = bare_rate(embedder, args.batch_size, min(args.seconds, 15.0))
                port = free_port()
                env = cli_env(
                    DUPDETECT_MODEL=model,
                    DUPDETECT_DATA_DIR=str(Path(tmp) / f"{model}-{runtime}"),
                    DUPDETECT_LOG_LEVEL="warning",
                    DUPDETECT_DECODE_WORKERS=str(args.decode_workers),
                    DUPDETECT_BATCH_SIZE=str(args.batch_size),
                    DUPDETECT_THREADS=str(args.threads),
                    DUPDETECT_RUNTIME=runtime,
                    DUPDETECT_RATE_LIMIT="0",  # one address, many clients
                    DUPDETECT_GEOMETRIC_CHECK=str(not args.no_geometric_check).lower(),
                    **({"DUPDETECT_WEIGHTS_FILE": str(weights)} if weights else {}),
                )
                proc = start_serve(env, port)
                try:
                    wait_ready(proc, port)
                    rate = asyncio.run(
                        http_rate(f"http://127.0.0.1:{port}", photos, args.clients, args.per_request, args.seconds)
                    )
                finally:
                    proc.terminate()
                    proc.wait(timeout=60)
                rows.append(
                    [model, kind, f"{embedder.precision} {embedder.runtime}", f"{bare:.1f}", f"{rate:.1f}", f"{rate / bare:.2f}"]
                )
                print(rows[-1], flush=True)
    table(
        f"bench/ingest.py on {device} ({platform.machine()}): {args.clients} clients × {args.per_request} photos,"
        f" decode workers {args.decode_workers or os.cpu_count()}, torch threads {args.threads or os.cpu_count()},"
        f" batch {args.batch_size}",
        ["model", "weights", "precision, runtime", "bare model img/s", "HTTP ingest img/s", "ingest ÷ bare"],
        rows,
    )


if __name__ == "__main__":
    main()
