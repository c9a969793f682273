from controlplane.celery import app


def task(name: str, **options):
    """The project-wide task decorator: explicit names, late acks, bounded retries by default."""
    options.setdefault("acks_late", True)
    options.setdefault("ignore_result", True)
    return app.task(name=name, **options)
