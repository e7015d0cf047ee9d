"""Writes of the labeling app.

- ``triplets``: choosing candidate triplets (neighbourhood policy, active selection) and keeping
  each collection's queue filled;
- ``judgments``: handing triplets to labelers, recording, skipping and undoing answers;
- ``quality``: gold triplets;
- ``feedback``: analysts' marks on search results, as judged triplets;
- ``transfer``: import and export of judgments between installations.
"""
