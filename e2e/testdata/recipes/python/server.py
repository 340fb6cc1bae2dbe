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
    server = Server(socket.socket(fileno=3))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever)
    serving.start()
    stop.wait()
    server.shutdown()  # returns after the request in progress
    serving.join()


if __name__ == "__main__":
    main()
