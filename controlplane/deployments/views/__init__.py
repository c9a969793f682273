"""Deployment pages, one module per page family: ``listing`` (the Deployments page, the plan form
and the scheduled list) and ``detail`` (a deployment's live page and its actions). Each module
keeps its own ``urlpatterns``; ``deployments.urls`` joins them."""
