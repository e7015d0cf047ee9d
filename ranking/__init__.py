"""torch code: networks, losses, datasets and training loops (issue 3).

Modules here import nothing from Django so they can be tested and run alone.
"""
