"""PERL: a frozen CLIP adapted by a ~6K-parameter recurrent thought projector."""

__version__ = "0.1.0"
