"""s3test: a real S3-compatible server (s3rver, from npm) on loopback for the S3 tests, and a
loopback proxy in front of it that can answer 500, drop connections mid-download, trickle
chunks, and check every request's Signature V4 with botocore (an independent signer), since
s3rver does not.

s3rver comes from scripts/install-npm: $OPD_S3RVER, else the one under $OPD_NPM_DIR (default
/var/lib/opd/npm)."""
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

S3RVER = os.environ.get("OPD_S3RVER") or os.path.join(
    os.environ.get("OPD_NPM_DIR", "/var/lib/opd/npm"), "node_modules", ".bin", "s3rver")
KEY_ID, SECRET = "S3RVER", "S3RVER"  # s3rver's own; it accepts any


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3rver:
    """One s3rver process with its own data directory and bucket."""

    def __init__(self, bucket="opd-test"):
        if not os.access(S3RVER, os.X_OK):
            raise RuntimeError(f"{S3RVER} missing: run scripts/install-npm")
        self.bucket = bucket
        self.dir = tempfile.mkdtemp(prefix="opd-s3rver-")
        self.port = free_port()
        self.proc = None
        self.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self.log = open(os.path.join(self.dir, "s3rver.log"), "a")
        self.proc = subprocess.Popen(
            [S3RVER, "-d", os.path.join(self.dir, "data"), "-a", "127.0.0.1", "-p",
             str(self.port), "--silent", "--configure-bucket", self.bucket],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        last = None
        while time.time() < deadline:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                c.request("HEAD", f"/{self.bucket}")
                last = c.getresponse().status
                if last == 200:
                    return
            except OSError as e:
                last = e
            finally:
                c.close()
            if self.proc.poll() is not None:
                raise RuntimeError("s3rver exited at start")
            time.sleep(0.1)
        with open(os.path.join(self.dir, "s3rver.log")) as f:
            raise RuntimeError(f"s3rver did not come up ({last}):\n" + f.read()[-3000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def object_path(self, key):
        """Where s3rver keeps an object's bytes (to corrupt one on purpose)."""
        return os.path.join(self.dir, "data", self.bucket, key + "._S3rver_object")

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def botocore_signature(method, path, query, headers, key_id, secret, token=None):
    """The Signature V4 botocore computes for a received request (only the signed headers),
    at the request's own x-amz-date."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    auth = headers.get("Authorization", "")
    fields = dict(p.strip().split("=", 1) for p in auth.split(" ", 1)[1].split(","))
    scope = fields["Credential"].split("/")
    region = scope[2]
    signed = fields["SignedHeaders"].split(";")
    hdrs = {h: headers.get(h, "") for h in signed}
    url = f"http://{headers.get('host')}{path}" + (f"?{query}" if query else "")
    req = AWSRequest(method=method, url=url, headers=hdrs)
    signer = S3SigV4Auth(Credentials(key_id, secret, token), "s3", region)
    req.context["timestamp"] = headers.get("x-amz-date")
    canonical = signer.canonical_request(req)
    sts = signer.string_to_sign(req, canonical)
    return fields["Signature"], signer.signature(sts, req), fields["Credential"].split("/")[0]


class Proxy:
    """HTTP proxy on loopback in front of an S3 server, with faults and a signature check."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.lock = threading.Lock()
        self.fail_next = 0          # answer this many next requests with 500
        self.drop_chunks_after = None  # chunk GETs served before connections are dropped
        self.check = None           # (key_id, secret, token): verify signatures
        self.fail_match = None      # answer 500 to requests whose "METHOD path?query" has this
        self.fail_match_left = 0    # that many times (-1: always)
        self.complete_error = None  # [code, times]: CompleteMultipartUpload answers 200 + <Error>
        self.trickle_chunks = None  # bytes a second: chunk GETs' bodies go out no faster
        self.reset_counts()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                verdict = proxy.decide(self, body)
                if verdict == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if isinstance(verdict, tuple):
                    status, code = verdict
                    self.reply(status, f"<?xml version=\"1.0\"?><Error><Code>{code}</Code>"
                               f"<Message>injected by the test proxy</Message></Error>".encode())
                    return
                c = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=60)
                hdrs = {k: v for k, v in self.headers.items() if k.lower() != "expect"}
                try:
                    c.request(self.command, self.path, body=body, headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                except OSError:  # the server is down: so is the connection
                    c.close()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                c.close()
                if verdict == "trickle":
                    self.trickle(data, proxy.trickle_chunks)
                elif self.command != "HEAD":
                    self.wfile.write(data)

            def trickle(self, data, rate):
                """data in pieces of an eighth of rate, one every 1/8 s, until it is out or
                the client has left."""
                step = max(1, rate // 8)
                try:
                    for i in range(0, len(data), step):
                        self.wfile.write(data[i:i + step])
                        self.wfile.flush()
                        time.sleep(0.125)
                except OSError:
                    self.close_connection = True

            def reply(self, status, data):
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_HEAD = do_POST = do_DELETE = handle_one

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def reset_counts(self):
        with self.lock:
            self.requests = []      # (method, path)
            self.injected = 0
            self.dropped = 0
            self.chunk_gets = 0
            self.sig_checked = 0
            self.sig_bad = []

    def decide(self, h, body):
        path, _, query = h.path.partition("?")
        with self.lock:
            self.requests.append((h.command, h.path))
            if self.check:
                key_id, secret, token = self.check
                hdrs = {k.lower(): v for k, v in h.headers.items()}
                hdrs["Authorization"] = h.headers.get("Authorization", "")
                try:
                    got, want, used_id = botocore_signature(h.command, path, query, hdrs, key_id,
                                                            secret, token)
                except Exception as e:  # a malformed Authorization is a failure too
                    self.sig_bad.append((h.command, h.path, repr(e)))
                    return (403, "AccessDenied")
                self.sig_checked += 1
                if used_id != key_id:
                    return (403, "InvalidAccessKeyId")
                if got != want or hdrs.get("x-amz-content-sha256") != (
                        hashlib.sha256(body).hexdigest()):
                    self.sig_bad.append((h.command, h.path, got, want))
                    return (403, "SignatureDoesNotMatch")
                if token and hdrs.get("x-amz-security-token") != token:
                    return (403, "InvalidToken")
            if self.fail_match and self.fail_match_left != 0 and \
                    self.fail_match in f"{h.command} {h.path}":
                self.fail_match_left -= 1 if self.fail_match_left > 0 else 0
                self.injected += 1
                return (500, "InternalError")
            if self.complete_error and self.complete_error[1] != 0 and h.command == "POST" \
                    and "uploadId=" in query:
                self.complete_error[1] -= 1 if self.complete_error[1] > 0 else 0
                self.injected += 1
                return (200, self.complete_error[0])  # S3's 200 with an error body
            if self.fail_next > 0:
                self.fail_next -= 1
                self.injected += 1
                return (500, "InternalError")
            if h.command == "GET" and "/chunks/" in path:
                if self.drop_chunks_after is not None and self.chunk_gets >= self.drop_chunks_after:
                    self.dropped += 1
                    return "drop"
                self.chunk_gets += 1
                if self.trickle_chunks:
                    return "trickle"
        return None

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def make_snapshot(cache, lang, version, mem, extra=None):
    """A snapshot directory in opd's cache layout with real hashes (not bootable: for the
    transfer tests, whose pools are off)."""
    d = os.path.join(cache, lang, version)
    os.makedirs(d)
    files = {"mem": mem, "vmstate": b"device state " + version.encode()}
    files.update(extra or {})
    entries = []
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        entries.append({"name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    m = {"format": 1, "version": version, "language": lang, "created": "2026-11-27T00:00:00Z",
         "agent_version": "test", "vmm": "qemu", "vmm_version": "0-test", "accel": "tcg",
         "language_version": "test", "memory_mb": 64, "vcpus": 1, "warm": False, "files": entries}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(m, f)
    cur = os.path.join(cache, lang, "current")
    if os.path.lexists(cur):
        os.unlink(cur)
    os.symlink(version, cur)
    return d


def opctl_s3(args, config, env=None, timeout=600):
    from opdtest import OPCTL
    e = {**os.environ, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    e.pop("AWS_SESSION_TOKEN", None)
    e.update(env or {})
    return subprocess.run([OPCTL, "--config", config] + args, capture_output=True, text=True,
                          env=e, timeout=timeout)


def write_config(path, **keys):
    with open(path, "w") as f:
        for k, v in keys.items():
            f.write(f"{k.replace('__', '.')} = {v}\n")
    return path


def signing_key(directory, name="sign.pem"):
    """A new Ed25519 signing key made by `opctl snapshot keygen`: (private key path, public key
    as s3.trusted_keys wants it)."""
    from opdtest import OPCTL
    path = os.path.join(directory, name)
    p = subprocess.run([OPCTL, "snapshot", "keygen", "--out", path], capture_output=True,
                       text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"opctl snapshot keygen: {p.stderr}")
    return path, p.stdout.strip()
