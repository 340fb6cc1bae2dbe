# A plain-Python server for the standard-library recipe: the listening
# socket is fd 3, passed by gm2-init (socket.socket(fileno=3)); it answers
# "pid P ppid Q" and stops on SIGTERM after the request in progress.
import http.server
import os
import signal
import socket
import socketserver
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    # TCPServer serves one connection at a time: a client that connects
    # and sends nothing would hold up every later request, and the stop
    # (shutdown() waits for the connection in progress) until SIGKILL.
    timeout = 2

    def do_GET(self):
        body = ("pid %d ppid %d\n" % (os.getpid(), os.getppid())).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.TCPServer):
    def __init__(self, sock):
        super().__init__(sock.getsockname(), Handler, bind_and_activate=False)
        self.socket = sock


def main():
    # Non-blocking: every worker of the app waits on this same socket, so
    # when select() says a connection is there, another worker may take it
    # first. A blocking accept() would then wait for the next connection,
    # and a stop that comes meanwhile (shutdown() waits for the loop) would
    # hang until SIGKILL. socketserver takes the failed accept as "nothing".
    sock = socket.socket(fileno=3)
    sock.setblocking(False)
    server = Server(sock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever)
    # The serving thread starts with SIGTERM blocked (threads inherit the
    # mask), so that the kernel delivers it to the main thread, the one
    # that runs Python's handlers and waits in stop.wait().
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    serving.start()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    stop.wait()
    server.shutdown()  # returns after the request in progress
    serving.join()


if __name__ == "__main__":
    main()
