"""UI routes of this app, mounted at the site root: each page module's own routes."""
from controlplane.deployments.views import detail, listing

urlpatterns = [*listing.urlpatterns, *detail.urlpatterns]
