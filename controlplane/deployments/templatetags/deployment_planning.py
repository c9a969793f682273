"""``{% plan_form_for endpoint %}``: the plan form with the endpoint fixed, for the endpoint's own
page (whose view knows nothing of deployments). The page shows it to deployers only; the
services check the role again on every post."""
from django import template

from controlplane.deployments.forms import DeploymentPlanForm

register = template.Library()


@register.inclusion_tag("deployments/_plan_form.html")
def plan_form_for(endpoint):
    return {"form": DeploymentPlanForm(fixed=endpoint.public_name), "preview": None}
