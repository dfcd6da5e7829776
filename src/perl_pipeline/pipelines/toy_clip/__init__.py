"""toy_clip: generate the toy world's image-caption pairs, pretrain a small CLIP on them, probe it."""

from perl_pipeline.pipelines.toy_clip.pipeline import create_pipeline

__all__ = ["create_pipeline"]
