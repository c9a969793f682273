FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY controlplane ./controlplane
COPY workers ./workers
COPY gateway ./gateway
COPY cli ./cli
RUN pip install --no-cache-dir .
COPY manage.py ./
COPY templates ./templates
COPY static ./static
RUN SWITCHYARD_SECRET_KEY=build-only SWITCHYARD_STATIC_ROOT=/app/staticfiles python manage.py collectstatic --noinput
RUN useradd --system --uid 1000 switchyard && mkdir -p /var/lib/switchyard && chown switchyard /var/lib/switchyard
USER switchyard
EXPOSE 8000 8080
CMD ["gunicorn", "controlplane.wsgi:application", "--bind", "0.0.0.0:8000"]
