"""What the benchmark scripts share: installing a peer, starting `flowvm collect` on loopback
ports the OS picks, and reading its Prometheus metrics."""

import os
import re
import shutil
import subprocess
import sys


def ensure_package(command, package):
    """Installs the Debian `package` when `command` is not on PATH."""
    if shutil.which(command):
        return
    print("%s not found: apt-get install -y %s" % (command, package), flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    if not shutil.which(command):
        sys.exit("%s still not on PATH after installing %s" % (command, package))


def metric(text, name):
    """A Prometheus metric's value, summed over its labels (0 when absent)."""
    return sum(int(v) for v in re.findall(r"^%s(?:\{[^}]*\})? (\d+)$" % re.escape(name), text,
                                          re.M))


def start_collect(binary, out, listen="127.0.0.1:0", extra=()):
    """Starts `binary collect` over UDP only on `listen` (and a UDP-only port), metrics on a
    port the OS picks, archiving into `out`; returns the process, its first UDP address and
    its metrics address, read from what it prints."""
    proc = subprocess.Popen(
        [binary, "collect", "--listen", listen, "--no-tcp", "--udp-listen", "127.0.0.1:0",
         "--metrics", "127.0.0.1:0", "--out", out, "--log-level", "error", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    udp = metrics = None
    for line in proc.stdout:
        if line.startswith("listening udp ") and udp is None:
            udp = line.split()[2]
        if line.startswith("metrics http://"):
            metrics = line.strip()[len("metrics http://"):].split("/")[0]
            break
    if udp is None or metrics is None:
        proc.kill()
        sys.exit("%s collect did not print its addresses" % binary)
    return proc, udp, metrics
