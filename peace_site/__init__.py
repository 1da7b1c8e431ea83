# The Celery app is loaded with Django, so tasks sent from the web (an
# execution handed to Celery) use its settings.
from .celery import app as celery_app

__all__ = ("celery_app",)
