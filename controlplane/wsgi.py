import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
application = get_wsgi_application()

# The loaded app is ~130k long-lived objects that every full collection would walk again (60-70 ms
# each, the tail of the chart API in benchmarks/metrics_pipeline.py); freeze them out of the GC.
gc.freeze()
