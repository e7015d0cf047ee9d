"""Writes to the image library and the job table, as plain functions.

``jobs`` records background work; ``ingest`` turns files into images; ``library``
edits collections and images.
"""
