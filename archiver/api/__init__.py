"""HTTP API: the app factory, routers, auth and the one error shape."""
