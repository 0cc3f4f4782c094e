"""ASGI entry point: HTTP through Django, websockets through Channels (session auth, origin check)."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mmplatform.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from bots.engine.gateways import warm_up  # noqa: E402
from mmplatform.routing import websocket_urlpatterns  # noqa: E402

warm_up()  # the kill switch runs in the web process: no 1.5 s ccxt import on its path

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)

# Everything imported so far lives as long as the process: move it out of the garbage collector's
# generations so a full collection (a stall every socket feels at once) has far less to walk.
gc.freeze()
