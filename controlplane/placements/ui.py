"""What the model page shows for this app. The registry's model_detail view merges this in."""


def model_page_context(model, user) -> dict:
    return {}
