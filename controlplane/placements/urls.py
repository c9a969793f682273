"""UI routes of this app (forms and htmx fragments), mounted at the site root."""
urlpatterns = []
