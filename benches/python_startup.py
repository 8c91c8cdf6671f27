"""Startup time of the release gateway with the Python plugin: cold (empty
compile cache) and cached, from exec to the first JSONL reply.

    cargo build --release
    plugins/jsonl-py/build.sh target/plugins-py/jsonl.wasm
    python3 benches/python_startup.py
"""
import json, os, shutil, socket, subprocess, sys, time
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
bin_ = f"{root}/target/release/nsq-gateway"
comp = f"{root}/target/plugins-py/jsonl.wasm"
work = os.environ.get("WORK", "/tmp/nsq-gateway-pystart")
cache = f"{work}/cache"
def config(port, http):
    return f"""tcp_address: "127.0.0.1:{port}"
http_address: "127.0.0.1:{http}"
data_path: "{work}/data"
plugin_cache_path: "{cache}"
plugins:
  - name: jsonl
    component: {comp}
    magics: ['{{"op']
    limits:
      memory: 67108864
      max_connections: 64
"""
def run(label, port, http):
    path = f"{work}/g.yaml"
    open(path, "w").write(config(port, http))
    t0 = time.monotonic()
    p = subprocess.Popen([bin_, "--config", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
                s.sendall(b'{"op":"pub","topic":"t","body":"x"}\n')
                s.settimeout(30)
                line = s.makefile().readline()
                if line:
                    dt = time.monotonic() - t0
                    print(f"{label}: first reply {line.strip()} after {dt:.2f} s")
                    return dt
            except OSError:
                time.sleep(0.02)
            if p.poll() is not None:
                sys.exit(f"gateway exited {p.returncode}")
    finally:
        p.terminate(); p.wait()
shutil.rmtree(cache, ignore_errors=True); shutil.rmtree(f"{work}/data", ignore_errors=True)
os.makedirs(f"{work}/data", exist_ok=True)
run("cold (empty cache)", 24150, 24151)
for i in range(3):
    run(f"cached #{i+1}", 24150, 24151)
