"""Online inference: a Ray Serve application (FastAPI ingress + batching model deployment).

``serve.app:build_app`` builds it from :class:`serve.settings.ServeSettings`; ``serve.cli`` runs it.
"""
