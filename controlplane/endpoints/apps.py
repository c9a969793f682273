from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "controlplane.endpoints"
    label = "endpoints"
    verbose_name = "Endpoints and the gateway"
