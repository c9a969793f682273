import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("switchyard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ["workers.fleet", "workers.placements", "workers.audit", "workers.endpoints", "workers.notifications",
                    "workers.deployments"]
