"""What the stack's processes say to each other over HTTP, named once: the health
path, and the headers between Nginx and the stack's WSGI wrapper. Nginx's
files name the headers too (nginx/proxy.conf, nginx/nginx.conf.j2); a test
keeps them equal to these."""

HEALTH_PATH = "/healthz"
# Nginx -> the app: the run's token that vouches for the forwarded headers.
PROXY_HEADER = "X-Flask-Stack-Proxy"
# The app -> Nginx, hidden from the client: the route the app matched, and the
# worker that answered, for the access log and the metrics.
ROUTE_HEADER = "X-Flask-Stack-Route"
WORKER_HEADER = "X-Flask-Stack-Worker"
# The route of a request a Flask app matched no rule for, and of any request
# to an app that is not Flask (its routes are unknown).
UNMATCHED = "unmatched"
NOT_FLASK = "wsgi"


def environ_key(header: str) -> str:
    """How a request header appears in a WSGI environ."""
    return "HTTP_" + header.upper().replace("-", "_")
