from django.apps import AppConfig


class ClassifyConfig(AppConfig):
    name = "zooplatform.classify"
    label = "classify"

    def ready(self):
        from django.contrib.auth.signals import user_logged_in
        from django.db.models.signals import post_delete, post_save

        from zooplatform.galaxies.models import GoldStandard, Project
        from zooplatform.workflows.models import Workflow, WorkflowVersion

        from .identity import on_user_logged_in

        user_logged_in.connect(on_user_logged_in, dispatch_uid="classify.volunteer_claim")
        # The selector's per-process caches (serving context, gold ids) also expire by themselves within
        # a minute; a change made in this process is seen at once.
        for model in (Project, Workflow, WorkflowVersion, GoldStandard):
            for signal in (post_save, post_delete):
                signal.connect(_clear_caches, sender=model, dispatch_uid=f"classify.caches.{signal}.{model.__name__}")


def _clear_caches(sender, **kwargs):
    from .selectors import caches_clear

    caches_clear()
