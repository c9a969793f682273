"""Switchyard settings. Everything that differs between machines comes from the environment.

See README.md ("Configuration") for the list of variables.
"""
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from controlplane.env import Env

BASE_DIR = Path(__file__).resolve().parent.parent
env = Env()

DEBUG = env.strict_bool("SWITCHYARD_DEBUG", default=False)
VAR_DIR = Path(env.str("SWITCHYARD_VAR_DIR", default=str(BASE_DIR / "var")))

SECRET_KEY = env.str("SWITCHYARD_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SWITCHYARD_SECRET_KEY must be set unless SWITCHYARD_DEBUG=true")
    SECRET_KEY = "insecure-debug-only-secret-key"

ALLOWED_HOSTS = env.list("SWITCHYARD_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("SWITCHYARD_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # First, so that its createsuperuser and changepassword (which audit) replace Django's.
    "controlplane.accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "csp",
    "controlplane.common",
    "controlplane.audit",
    "controlplane.registry",
    "controlplane.fleet",
    "controlplane.quotas",
    "controlplane.serving",
    "controlplane.placements",
    "controlplane.endpoints",
    "controlplane.metrics",
    "controlplane.notifications",
    "controlplane.deployments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "controlplane.common.middleware.RequestIdMiddleware",
    "controlplane.common.middleware.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if not DEBUG:  # in debug, runserver and the test live server serve static files themselves
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"

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
                "controlplane.deployments.context_processors.rollback_failed",
            ],
        },
    },
]

DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'switchyard.sqlite3'}")}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The sign-in throttle sits in the backend, so every login form (UI and admin) goes through it.
AUTHENTICATION_BACKENDS = ["controlplane.accounts.backends.ThrottledModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "overview"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("SWITCHYARD_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Uploaded version files: anything above the in-memory threshold spools to disk.
SWITCHYARD_MAX_UPLOAD_BYTES = env.positive_int("SWITCHYARD_MAX_UPLOAD_MB", default=512) * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 2_621_440

# Model artifacts in S3 (MinIO in compose, moto's server in tests and the demo).
# Credentials and region come from boto3's own variables: AWS_ACCESS_KEY_ID,
# AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION.
SWITCHYARD_S3_ENDPOINT_URL = env.str("SWITCHYARD_S3_ENDPOINT_URL", default="") or None
SWITCHYARD_S3_BUCKET = env.str("SWITCHYARD_S3_BUCKET", default="switchyard-models")
SWITCHYARD_S3_PREFIX = env.str("SWITCHYARD_S3_PREFIX", default="repo").strip("/")
# Where CI stages a build before registering it: s3://<bucket>/<staging prefix>/<team>/... A team
# registers only from its own staging area, never from the repository, so no team can copy
# another team's artifacts through Switchyard.
SWITCHYARD_S3_STAGING_PREFIX = env.str("SWITCHYARD_S3_STAGING_PREFIX", default="staging").strip("/")
if not SWITCHYARD_S3_PREFIX or not SWITCHYARD_S3_STAGING_PREFIX:
    raise ImproperlyConfigured("SWITCHYARD_S3_PREFIX and SWITCHYARD_S3_STAGING_PREFIX must not be empty")
if any(
    a == b or a.startswith(f"{b}/")
    for a, b in ((SWITCHYARD_S3_PREFIX, SWITCHYARD_S3_STAGING_PREFIX), (SWITCHYARD_S3_STAGING_PREFIX, SWITCHYARD_S3_PREFIX))
):
    raise ImproperlyConfigured("SWITCHYARD_S3_STAGING_PREFIX must lie outside SWITCHYARD_S3_PREFIX, and the other way round")

# Talking to Triton.
SWITCHYARD_TRITON_TIMEOUT_SECONDS = env.positive_float("SWITCHYARD_TRITON_TIMEOUT_SECONDS", default=5.0)
SWITCHYARD_PROBE_INTERVAL_SECONDS = env.positive_int("SWITCHYARD_PROBE_INTERVAL_SECONDS", default=15)
SWITCHYARD_PROBE_CONCURRENCY = env.positive_int("SWITCHYARD_PROBE_CONCURRENCY", default=32)

# Placements on the fleet, and the reconciler that keeps them there.
SWITCHYARD_PLACEMENT_LOAD_TIMEOUT_SECONDS = env.positive_float("SWITCHYARD_PLACEMENT_LOAD_TIMEOUT_SECONDS", default=300.0)
SWITCHYARD_PLACEMENT_STUCK_SECONDS = env.positive_float("SWITCHYARD_PLACEMENT_STUCK_SECONDS", default=600.0)
SWITCHYARD_PLACEMENT_UNLOAD_WAIT_SECONDS = env.positive_float("SWITCHYARD_PLACEMENT_UNLOAD_WAIT_SECONDS", default=15.0)
SWITCHYARD_PLACEMENT_PENDING_GRACE_SECONDS = env.positive_float("SWITCHYARD_PLACEMENT_PENDING_GRACE_SECONDS", default=60.0)
SWITCHYARD_PLACEMENT_CONCURRENCY = env.positive_int("SWITCHYARD_PLACEMENT_CONCURRENCY", default=SWITCHYARD_PROBE_CONCURRENCY)
SWITCHYARD_RECONCILE_INTERVAL_SECONDS = env.positive_int("SWITCHYARD_RECONCILE_INTERVAL_SECONDS", default=30)
# The model page's live view shows the last sample, taken this often by a periodic task.
SWITCHYARD_LIVE_SAMPLE_INTERVAL_SECONDS = env.positive_int("SWITCHYARD_LIVE_SAMPLE_INTERVAL_SECONDS", default=10)

# The inference gateway (gateway/) fetches the routing table and reports in with this shared key
# (Authorization: Bearer <key>). Unset, those endpoints answer 503: no key is ever made up.
SWITCHYARD_GATEWAY_KEY = env.str("SWITCHYARD_GATEWAY_KEY", default="")

# Prometheus (controlplane/metrics): the URL charts and gates query; empty runs without metrics.
# Discovery (GET /api/v1/metrics/targets/) and `manage.py prometheus_config` use the intervals.
SWITCHYARD_PROMETHEUS_URL = env.str("SWITCHYARD_PROMETHEUS_URL", default="").rstrip("/")
# The address people open Switchyard at, for links sent out of it (webhooks); empty sends paths.
SWITCHYARD_PUBLIC_URL = env.str("SWITCHYARD_PUBLIC_URL", default="").rstrip("/")
# Every query from Switchyard (charts, the model page, gates) gives up after this; a web request may wait on it.
SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS = env.positive_float("SWITCHYARD_PROMETHEUS_TIMEOUT_SECONDS", default=2.0)
SWITCHYARD_PROMETHEUS_GATEWAY_SCRAPE_SECONDS = env.positive_float("SWITCHYARD_PROMETHEUS_GATEWAY_SCRAPE_SECONDS", default=1.0)
SWITCHYARD_PROMETHEUS_TRITON_SCRAPE_SECONDS = env.positive_float("SWITCHYARD_PROMETHEUS_TRITON_SCRAPE_SECONDS", default=10.0)

# Webhook notifications (controlplane/notifications): a failed delivery is retried after this,
# then twice as long each time (6 attempts in all).
SWITCHYARD_WEBHOOK_BACKOFF_SECONDS = env.positive_float("SWITCHYARD_WEBHOOK_BACKOFF_SECONDS", default=2.0)

# Celery. Without a broker URL, a filesystem broker under VAR_DIR needs no server process.
REDIS_URL = env.str("REDIS_URL", default="")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL or "filesystem://"
if CELERY_BROKER_URL == "filesystem://":
    CELERY_BROKER_TRANSPORT = "controlplane.common.filesystem_broker:Transport"  # kombu's, writing atomically
    _broker_dir = VAR_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # kombu takes one message per queue per poll; at its default 1 s, the 1 s beat tick alone
        # nearly fills the worker, and a deployment's tasks queued up behind it (seconds of lag)
        "polling_interval": 0.1,
    }
    for _folder in ("queue", "processed", "control"):  # kombu expects them to exist
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
# The cache holds sign-in throttling counters, so it must be shared by every web process.
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL, "KEY_PREFIX": "switchyard"}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE = {
    "probe-fleet": {
        "task": "fleet.probe_fleet",
        "schedule": float(SWITCHYARD_PROBE_INTERVAL_SECONDS),
    },
    "reconcile-placements": {
        "task": "placements.reconcile_fleet",
        "schedule": float(SWITCHYARD_RECONCILE_INTERVAL_SECONDS),
    },
    "sample-placements": {
        "task": "placements.sample_live",
        "schedule": float(SWITCHYARD_LIVE_SAMPLE_INTERVAL_SECONDS),
    },
    # The safety net under request_publish(): token expiry, and any change a hook missed.
    "publish-routing-table": {
        "task": "endpoints.publish_table",
        "schedule": 5.0,
    },
    # The safety net under each delivery's own retry message (a lost message, a dead worker).
    "webhook-retry-due": {
        "task": "notifications.retry_due",
        "schedule": 5.0,
    },
    # Schedules, deadlines, and deployments whose wait is over or whose worker died.
    "deployments-tick": {
        "task": "deployments.tick",
        "schedule": 1.0,
    },
    # Keeps the audit badge's quick check short: it re-hashes only what came after the checkpoint.
    "audit-checkpoint": {
        "task": "audit.checkpoint_extend",
        "schedule": 60.0,
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "controlplane.accounts.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "controlplane.common.api.Pagination",
    "DEFAULT_PARSER_CLASSES": [
        "controlplane.common.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "controlplane.common.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Switchyard API",
    "DESCRIPTION": "Control plane for NVIDIA Triton inference fleets.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "controlplane.common.schema.declare_error_responses",
    ],
}

# Content-Security-Policy (django-csp 4). Pages load scripts and styles only from our own static
# files: no inline <script>, no on*= handlers, no style= attributes, no eval. Templates put user
# text in data attributes read by static/js/switchyard.js. The one exception is the Swagger UI
# page (controlplane/common/views.py). django-csp leaves DEBUG's 404/500 pages alone.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"  # frame-ancestors 'none' for browsers without CSP

SESSION_COOKIE_SECURE = env.strict_bool("SWITCHYARD_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("SWITCHYARD_LOG_LEVEL", default="INFO")},
    "loggers": {"botocore": {"level": "WARNING"}, "boto3": {"level": "WARNING"}},
}
