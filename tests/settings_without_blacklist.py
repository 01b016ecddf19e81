"""A host site without simplejwt's blacklist app: tokens still work, revoke is a 404."""

from taskqueue_project.settings import *  # noqa: F403
from taskqueue_project.settings import INSTALLED_APPS

INSTALLED_APPS = [app for app in INSTALLED_APPS
                  if app != "rest_framework_simplejwt.token_blacklist"]
