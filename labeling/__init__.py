"""Triplet labeling: candidate triplets, judgments, quality control (issue 4)."""
