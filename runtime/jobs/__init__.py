"""Batch jobs: resumable JSONL corpora and Ray Data."""
