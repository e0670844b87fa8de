"""Start PyPI's sushy-tools Redfish emulator (--fake: no libvirt/OpenStack) on loopback with
HTTP basic auth, for collector/tests/facility_redfish.rs.

Usage: python sushy_emulator.py PORT DIR USER PASSWORD [--tls]

With --tls, a self-signed certificate for 127.0.0.1 is made with the openssl CLI and written to
DIR/cert.pem (the test's CA file), and the emulator serves HTTPS.
"""

import os
import subprocess
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
    args = [emulator, "-i", "127.0.0.1", "-p", port, "--fake", "--config", conf]
    if "--tls" in sys.argv[5:]:
        cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
        # CA:FALSE: the certificate is both the trust anchor and the server's own, and webpki
        # refuses a CA certificate used as an end entity.
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-addext", "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
        args += ["--ssl-certificate", cert, "--ssl-key", key]
    os.execv(emulator, args)


if __name__ == "__main__":
    main()
