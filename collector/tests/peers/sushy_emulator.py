"""Start PyPI's sushy-tools Redfish emulator (--fake: no libvirt/OpenStack) on loopback with
HTTP basic auth, for collector/tests/facility_redfish.rs.

Usage: python sushy_emulator.py PORT DIR USER PASSWORD
"""

import os
import sys

import bcrypt


def main():
    port, work, user, password = sys.argv[1:5]
    os.makedirs(work, exist_ok=True)
    htpasswd = os.path.join(work, "htpasswd")
    with open(htpasswd, "w") as f:
        f.write("%s:%s\n" % (user, bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()))
    conf = os.path.join(work, "emulator.conf")
    with open(conf, "w") as f:
        f.write("SUSHY_EMULATOR_AUTH_FILE = %r\n" % htpasswd)
    emulator = os.path.join(os.path.dirname(sys.executable), "sushy-emulator")
    os.execv(emulator, [emulator, "-i", "127.0.0.1", "-p", port, "--fake", "--config", conf])


if __name__ == "__main__":
    main()
