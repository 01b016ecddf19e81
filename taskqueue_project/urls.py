"""Root URLconf; /admin/ is reserved for the REST admin API, Django's admin lives elsewhere."""

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from taskqueue_project.home import home
from tasks_app.api.login_throttle import throttled_login

admin.autodiscover()  # the apps' admin modules (see taskqueue_project.apps.AdminConfig)

urlpatterns: list[URLPattern | URLResolver] = [
    path("", home, name="home"),  # links to everything below
    # The admin's sign-in counts failed logins with POST /api/v1/auth/token (429 past them).
    path("django-admin/login/", throttled_login(admin.site.login)),
    path("django-admin/", admin.site.urls),
    # The REST API, /metrics and /dashboard/: the one include any site uses.
    path("", include("tasks_app.urls")),
]
