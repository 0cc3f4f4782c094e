"""URL configuration: admin, auth, health and the operator dashboard."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from bots.views import favicon
from mmplatform import views

admin.site.site_header = "mmplatform administration"
admin.site.site_title = "mmplatform"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="registration/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
    path("sla/", include("liquidity.urls")),
    path("", include("bots.urls")),
]
