# A WSGI app for the gunicorn recipe: it answers "pid P ppid Q", so that a
# test can tell which gm2-init worker (gunicorn's master, Q) served.
import os


def app(environ, start_response):
    body = ("pid %d ppid %d\n" % (os.getpid(), os.getppid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
