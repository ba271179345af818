"""A TLS-terminating loopback proxy in front of Kuzzle, for the TLS tests.

usage: tls_proxy.py CERT_PEM KEY_PEM TARGET_PORT
Listens on an ephemeral 127.0.0.1 port, prints "ready PORT", forwards each
TLS connection's plain bytes to 127.0.0.1:TARGET_PORT, and exits when its
standard input closes (so it never outlives the test that started it).
"""
import socket
import ssl
import sys
import threading


def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(conn, ctx, target):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError):
        conn.close()  # a client that refused our certificate
        return
    upstream = socket.create_connection(("127.0.0.1", target))
    t = threading.Thread(target=pump, args=(tls, upstream), daemon=True)
    t.start()
    pump(upstream, tls)
    t.join(timeout=5)
    tls.close()
    upstream.close()


def main():
    cert, key, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print("ready", listener.getsockname()[1], flush=True)

    def accept():
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn, ctx, target), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin


if __name__ == "__main__":
    main()
