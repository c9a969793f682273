from django.apps import AppConfig


class CommonConfig(AppConfig):
    name = "controlplane.common"
    label = "common"

    def ready(self):
        from controlplane.common import schema  # noqa: F401 - registers the bearer scheme with drf-spectacular
