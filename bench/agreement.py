"""Do the fast paths give the reference descriptors? Every runtime this machine has, on real photos.

    python bench/agreement.py [--models efficientnet_lite0,resnet50] [--images 64]

The reference is torch fp32 on the CPU. Against it: ONNX Runtime fp32 (the CPU default without
native bf16), torch bf16 on the CPU, and on CUDA torch bf16 and fp32 when a GPU is there. Each
row gives the cosine between the two descriptors of each photo: the worst and the mean. Stored
vectors stay comparable across machines only where the worst stays ≥ 0.99. ResNet weights
cannot be downloaded offline: ResNets run with random weights, which exercise the same
arithmetic but not trained activations, so the Lite0 row (real ImageNet weights) is the one to
trust.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.embed import mixed_set, table, weights_file  # noqa: E402
from dupdetect.embedding.decode import decode  # noqa: E402
from dupdetect.embedding.model import Embedder  # noqa: E402
from dupdetect.settings import ModelSettings  # noqa: E402

VARIANTS = [("cpu", "fp32", "onnx"), ("cpu", "bf16", "torch"), ("cuda", "bf16", "torch"), ("cuda", "fp32", "torch")]


def embed(pixels: np.ndarray, settings: ModelSettings) -> np.ndarray:
    embedder = Embedder(settings)
    embedder.load()
    return np.concatenate([embedder.predict(pixels[i : i + 16]) for i in range(0, len(pixels), 16)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="efficientnet_lite0,resnet50")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args()
    pixels = np.stack([decode(p, size=224, max_pixels=10**9).pixels for p in mixed_set(args.images)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            weights, kind = weights_file(model, Path(tmp))

            reference = embed(
                pixels, ModelSettings(model=model, weights_file=weights, device="cpu", precision="fp32", runtime="torch")
            )
            for device, precision, runtime in VARIANTS:
                if device == "cuda" and not torch.cuda.is_available():
                    continue
                settings = ModelSettings(model=model, weights_file=weights, device=device, precision=precision, runtime=runtime)  # type: ignore[arg-type]
                cosines = (reference * embed(pixels, settings)).sum(axis=1)
                rows.append([model, kind, f"{device} {precision} {runtime}", f"{cosines.min():.5f}", f"{cosines.mean():.5f}"])
                print(rows[-1], flush=True)
    table(
        f"Descriptor agreement with torch fp32 on the CPU, {len(pixels)} real photos",
        ["model", "weights", "path", "worst cosine", "mean cosine"],
        rows,
    )


if __name__ == "__main__":
    main()
