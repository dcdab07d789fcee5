"""What the review handlers receive: the review service of the caller's collection."""

from __future__ import annotations

from litestar.di import NamedDependency

from dupdetect.images.service import ImageService
from dupdetect.review.service import ReviewService


async def provide_review(images: NamedDependency[ImageService]) -> ReviewService:
    """Groups, decisions and marks of the caller's collection (the routes exist only for a store
    that keeps them)."""
    return ReviewService.of(images)
