import logging
import os

from django.core.wsgi import get_wsgi_application

from imagesearch.embedded_db import embedded_postgres_for_this_process

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "imagesearch.settings")
# Under `serve` a web worker is given DATABASE_URL and starts nothing; a gunicorn started on its own
# without it starts (or attaches to) the embedded PostgreSQL, as a management command does.
embedded_postgres_for_this_process()
application = get_wsgi_application()


def _warm_up() -> None:
    """Load the URLconf and the active search network in this web process before it takes requests.

    Otherwise a worker's first uploaded-image searches import torch, build and load the
    network and run its first forward pass (≈ 4 s on 2 cores alone; 3.5–9.8 s measured, 18 s
    reported, for the first requests after a start, all workers doing it at once: issue 14, docs/benchmarks.md
    "Search under concurrent load"). gunicorn (``serve``, without --preload) imports this
    module in each worker process, so each worker is warm before its first request; a
    failure (no database yet, an unreadable weights file) must not stop the worker, whose
    searches then load the network as before.
    """
    from django.db import connections
    from django.urls import get_resolver

    from ranking.query_encoder import active_models_warm

    try:
        get_resolver().url_patterns  # imports every view module (≈ 0.8 s), also left to the first request
        active_models_warm()
    except Exception:  # noqa: BLE001 - logged; searching still works, only the first one is slower
        logging.getLogger(__name__).exception("could not warm the search model")
    finally:
        connections.close_all()  # this thread serves no requests: don't keep its connection


_warm_up()
