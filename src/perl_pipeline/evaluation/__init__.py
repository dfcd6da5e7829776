"""Evaluation (accuracy and alignment per refinement step), metrics and paper-style reports."""
