from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from controlplane.accounts import throttle


class ThrottledModelBackend(ModelBackend):
    """Django's username/password backend behind the sign-in throttle.

    Every form that signs people in calls ``authenticate(request, ...)``, so throttling here
    covers the UI's login page and the admin's alike. Calls without a request (management
    commands, the test client's ``login``) are not throttled: they come from no address.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return super().authenticate(request, username=username, password=password, **kwargs)
        ip = request.META.get("REMOTE_ADDR", "")
        if throttle.is_blocked(username, ip):
            request.signin_throttled = True  # the login view answers 429
            raise PermissionDenied("Too many failed sign-ins.")  # stops authenticate() trying other backends
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            throttle.record_failure(username, ip)
        else:
            throttle.reset(username, ip)
        return user
