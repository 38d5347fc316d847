# A jupyter_server extension jssh loads into the Jupyter it starts: it lets the supervisor
# make sure the listener on a remote port is this Jupyter without sending it the token and
# without a remote shell. `GET /jssh-proof/CHALLENGE` (no token) answers
# HMAC-SHA256(key = the token, "jssh-proof CHALLENGE IP PORT"), IP and PORT being the address
# this very connection reached. A program that took the port cannot answer: it does not have
# the token, and relaying the challenge to this Jupyter elsewhere gets an answer for another
# address. Anything else (no such page, another body) sends the supervisor to its remote check.
import hashlib
import hmac
import re

from tornado import web

CHALLENGE = re.compile(r"[0-9a-f]{32}")


class Proof(web.RequestHandler):
    def initialize(self, serverapp):
        self.serverapp = serverapp

    def get(self, challenge):
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        address = self.request.connection.stream.socket.getsockname()
        # A Unix socket (a path) needs no proof; without a token there is nothing to prove with.
        if not CHALLENGE.fullmatch(challenge) or len(token) < 32 or not isinstance(address, tuple):
            raise web.HTTPError(404)
        ip, port = address[0], address[1]
        if ip.startswith("::ffff:"):
            ip = ip[len("::ffff:"):]
        message = f"jssh-proof {challenge} {ip} {port}".encode()
        self.set_header("Content-Type", "text/plain")
        self.set_header("Cache-Control", "no-store")
        self.finish(hmac.new(token.encode(), message, hashlib.sha256).hexdigest())


def _jupyter_server_extension_points():
    return [{"module": "jssh_proof"}]


def _load_jupyter_server_extension(serverapp):
    # At the root whatever the base URL: the supervisor asks there.
    serverapp.web_app.add_handlers(".*$", [(r"/jssh-proof/([^/]*)", Proof, {"serverapp": serverapp})])
