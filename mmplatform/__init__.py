"""The mmplatform Django project. The Celery app is created when Django loads its apps
(``mmplatform.apps``), so importing ``mmplatform.errors`` from pure code pulls in neither Django
nor Celery."""
