"""A ComfyUI stand-in for podcheck's tests: stdlib only, so it runs under any pod python.

It does what podcheck can observe of ComfyUI: parses ComfyUI's real options (comfy/cli_args.py),
exits at start-up like ComfyUI when --use-sage-attention is given and sageattention does not import,
logs ComfyUI's start-up lines (to stderr, or stdout with --log-stdout), and serves on its --listen
addresses and --port: GET /system_stats (with sys.argv; one "cpu" device), GET /queue, POST /queue
({"clear": true} / {"delete": [ids]}), POST /prompt (queues the prompt; nothing executes it),
POST /interrupt, POST /free (counted in system_stats["standin"]), GET /history.

Faults, from the environment:
  STANDIN_HTTP=silent        listen but never answer (a hung ComfyUI)
  STANDIN_SAGE_FALLBACKS=N   with sage flagged, log N per-call fallbacks to pytorch attention
  STANDIN_START_DELAY=S      wait S seconds before listening (a slow start: custom nodes loading)
"""
import json
import logging
import os
import platform
import socket
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import comfy.options

comfy.options.enable_args_parsing()

from comfy.cli_args import args  # noqa: E402  (parses sys.argv; exits 2 on bad options, like ComfyUI)

VERSION = "0.3.64"
SAGE_KERNEL_ERROR = "SM89 kernel is not available. Make sure you GPUs with compute capability 8.9."

logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout if args.log_stdout else sys.stderr)


def ram():
    """(total, available) bytes from /proc/meminfo: what psutil tells ComfyUI."""
    info = {}
    with open("/proc/meminfo") as fh:
        for line in fh:
            key, value = line.split(":", 1)
            info[key] = int(value.split()[0]) * 1024
    return info["MemTotal"], info.get("MemAvailable", info["MemFree"])


def dist_version(name):
    from importlib import metadata
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return ""


def choose_attention():
    """comfy/ldm/modules/attention.py at import: sage must import when flagged, else ComfyUI exits."""
    if args.use_sage_attention:
        try:
            import sageattention  # noqa: F401
        except ImportError as exc:
            if exc.name == "sageattention":
                logging.error("To use the `--use-sage-attention` feature, the `sageattention` package must be "
                              "installed first.\ncommand:\n\t%s -m pip install sageattention", sys.executable)
                sys.exit(-1)
            raise
        return "Using sage attention"
    if args.use_flash_attention:
        return "Using Flash Attention"
    if args.use_split_cross_attention:
        return "Using split optimization for attention"
    if args.use_quad_cross_attention:
        return ("Using sub quadratic optimization for attention, if you have memory or speed issues try using: "
                "--use-split-cross-attention")
    return "Using pytorch attention"


total_ram, _ = ram()
logging.info("Total VRAM %d MB, total RAM %d MB", total_ram >> 20, total_ram >> 20)
logging.info("pytorch version: %s", dist_version("torch") or "not installed")
logging.info("Set vram state to: %s", "DISABLED" if args.cpu else "NORMAL_VRAM")
logging.info("Device: cpu")
logging.info(choose_attention())
logging.info("Python version: %s", sys.version)
logging.info("ComfyUI version: %s", VERSION)
for flag, what in (("output_directory", "output"), ("input_directory", "input"), ("temp_directory", "temp"),
                   ("user_directory", "user")):
    if getattr(args, flag):
        path = os.path.abspath(getattr(args, flag))
        logging.info("Setting %s directory to: %s", what, os.path.join(path, "temp") if what == "temp" else path)

STATE = {"queue_running": [], "queue_pending": [], "next_number": 0, "free_calls": [], "lock": threading.Lock()}


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # ComfyUI keeps no access log
        pass

    def reply(self, code=200, body=None):
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            return json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            return {}

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/system_stats":
            total, free = ram()
            self.reply(body={
                "system": {"os": os.name, "ram_total": total, "ram_free": free, "comfyui_version": VERSION,
                           "python_version": sys.version, "pytorch_version": dist_version("torch"),
                           "embedded_python": False, "argv": sys.argv},
                "devices": [{"name": "cpu", "type": "cpu", "index": None, "vram_total": total, "vram_free": free,
                             "torch_vram_total": total, "torch_vram_free": free}],
                "standin": {"free_calls": STATE["free_calls"], "platform": platform.platform()},
            })
        elif path == "/queue":
            with STATE["lock"]:
                self.reply(body={"queue_running": STATE["queue_running"], "queue_pending": STATE["queue_pending"]})
        elif path == "/history":
            self.reply(body={})
        elif path == "/":
            self.reply(body={"standin": "ComfyUI"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        path, data = self.path.split("?", 1)[0], self.body()
        with STATE["lock"]:
            if path == "/queue":
                if data.get("clear"):
                    STATE["queue_pending"] = []
                gone = set(data.get("delete") or [])
                STATE["queue_pending"] = [item for item in STATE["queue_pending"] if item[1] not in gone]
                self.reply()
            elif path == "/prompt":
                number, prompt_id = STATE["next_number"], data.get("prompt_id") or str(uuid.uuid4())
                STATE["next_number"] += 1
                STATE["queue_pending"].append([number, prompt_id, data.get("prompt") or {}, {}, []])
                self.reply(body={"prompt_id": prompt_id, "number": number, "node_errors": {}})
            elif path == "/interrupt":
                self.reply()
            elif path == "/free":
                STATE["free_calls"].append({"unload_models": bool(data.get("unload_models")),
                                            "free_memory": bool(data.get("free_memory"))})
                self.reply()
            else:
                self.reply(404, {"error": "not found"})


def listen_socket(address, port):
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    sock.bind((address, port))
    sock.listen(16)
    return sock


def serve(sock):
    server = ThreadingHTTPServer(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.serve_forever()


def main():
    delay = float(os.environ.get("STANDIN_START_DELAY") or 0)
    if delay:
        time.sleep(delay)
    addresses = [a.strip() for a in args.listen.split(",") if a.strip()]
    try:
        sockets = [listen_socket(a, args.port) for a in addresses]
    except OSError as exc:
        logging.error("error while attempting to bind on address (%r, %d): %s", args.listen, args.port, exc.strerror)
        sys.exit(1)
    logging.info("Starting server\n")
    if not args.dont_print_server:
        for address in addresses:
            shown = "[%s]" % address if ":" in address else address
            logging.info("To see the GUI go to: http://%s:%d", shown, args.port)
    if args.quick_test_for_ci:
        sys.exit(0)
    if args.use_sage_attention:
        for _ in range(int(os.environ.get("STANDIN_SAGE_FALLBACKS") or 0)):
            logging.error("Error running sage attention: %s, using pytorch attention instead.", SAGE_KERNEL_ERROR)
    if os.environ.get("STANDIN_HTTP") == "silent":
        while True:  # connections queue up in the backlog; nobody ever answers
            time.sleep(3600)
    for sock in sockets[1:]:
        threading.Thread(target=serve, args=(sock,), daemon=True).start()
    serve(sockets[0])


if __name__ == "__main__":
    main()
