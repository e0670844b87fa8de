"""Serve recorded SNMP walks from PyPI's snmpsim-data with snmpsim on loopback, for
collector/tests/facility_snmp.rs.

Usage: python snmpsim_agent.py PORT DATA_DIR COMMUNITY=RECORDING [COMMUNITY=RECORDING ...]

RECORDING is a path inside snmpsim-data's data folder, e.g. UPS/eaton-9px-partial.snmprec.bz2.
Each recording is served under its COMMUNITY (snmpsim names communities after files).
"""

import bz2
import os
import shutil
import sys

import snmpsim_data


def main():
    port, data_dir = sys.argv[1], sys.argv[2]
    src_root = os.path.join(os.path.dirname(snmpsim_data.__file__), "data")
    os.makedirs(data_dir, exist_ok=True)
    for spec in sys.argv[3:]:
        community, rec = spec.split("=", 1)
        src = os.path.join(src_root, rec)
        dst = os.path.join(data_dir, community + ".snmprec")
        if rec.endswith(".bz2"):
            with bz2.open(src, "rb") as f, open(dst, "wb") as g:
                shutil.copyfileobj(f, g)
        else:
            shutil.copyfile(src, dst)
    responder = os.path.join(os.path.dirname(sys.executable), "snmpsim-command-responder")
    args = [responder, "--data-dir=" + data_dir, "--agent-udpv4-endpoint=127.0.0.1:" + port,
            "--cache-dir=" + os.path.join(data_dir, ".cache")]
    os.makedirs(os.path.join(data_dir, ".cache"), exist_ok=True)
    # snmpsim drops root to an unprivileged user, who may not read a venv built on a Python
    # under /root (pyenv): on loopback in a test, staying root is harmless.
    os.environ["SNMPSIM_ALLOW_ROOT"] = "true"
    os.execv(responder, args)


if __name__ == "__main__":
    main()
