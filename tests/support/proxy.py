"""A TCP proxy on loopback that a chaos test can cut and restore, to play a broker or database outage
without touching the shared servers behind it."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading


class OutageProxy:
    """Forwards 127.0.0.1:<port> to a target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.up = True
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._closed:
                client.close()
                self.listener.close()  # closed here, by the thread that waits on it
                return
            if not self.up:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # the 5 s were for connecting: an idle connection stays open
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        """Copy `source` to `sink` until either ends; then end the connection on both sides.

        When one side ends (its process was SIGKILLed, or it closed), the other side must see the
        end too, as it would without the proxy: a database session whose client died must end, or
        its open transaction keeps its row locks for good. So both sockets are shut down, which
        wakes the other pipe thread blocked in recv() on `sink`; each thread closes only the socket
        it reads (`source`), once it no longer waits on it. Closing `sink` here instead would not
        end that connection (Linux keeps a socket open while another thread is in recv() on it).
        """
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except (OSError, EOFError):  # eventlet's green sockets raise EOFError once cut
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:  # not connected any more, or closed by the other pipe thread
                    pass
            with self._lock:
                self._sockets.discard(source)
            try:
                source.close()
            except OSError:
                pass

    def cut(self) -> None:
        """The outage: every open connection dies, new ones are refused."""
        self.up = False
        with self._lock:
            for sock in self._sockets:
                try:
                    # Shut down, do not close: the pipe threads blocked in recv() wake up, see the end
                    # of the stream and close their sockets themselves (closing a socket another green
                    # thread waits on leaves a stale listener on a file number the OS will reuse).
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._sockets.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self._closed = True
        self.cut()
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()  # wakes accept() to exit


class OutageProxyProcess:
    """An OutageProxy in a plain-Python process of its own, for a whole platform's traffic: there it
    forwards with real threads and never competes with the test process (eventlet, a load generator)
    for its core. Controlled over stdin/stdout; it exits when its stdin closes (the test died)."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, target_host, str(target_port)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def _ask(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"the proxy did not {command}: {answer!r}")

    def cut(self) -> None:
        """The outage: every open connection dies, new ones are refused."""
        self._ask("cut")

    def restore(self) -> None:
        self._ask("restore")

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self._ask("close")
            except (OSError, RuntimeError):
                pass
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def serve(target_host: str, target_port: int) -> None:
    """The proxy process: print the port, then obey `cut`, `restore`, `close` read from stdin."""
    proxy = OutageProxy(target_host, target_port)
    print(proxy.port, flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "cut":
            proxy.cut()
        elif command == "restore":
            proxy.restore()
        elif command == "close":
            print("ok", flush=True)
            break
        else:
            print(f"unknown command {command}", flush=True)
            continue
        print("ok", flush=True)
    proxy.close()


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]))
