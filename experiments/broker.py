"""A local mosquitto broker for the MQTT tests and the load script: loopback only, persistent
(retained messages and the bridge's session survive a restart), restartable on the same port;
open to anonymous clients, or secured (``users`` and an ``acl``: anonymous clients refused)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

# ``user``: the current one (started as root, mosquitto would otherwise switch to the user
# "mosquitto", which cannot write its persistence file into our folder, and lose it all on a restart)
CONFIG = """user {user}
listener {port} 127.0.0.1
{access}
persistence true
persistence_location {folder}/
max_queued_messages 1000000
max_inflight_messages 100
log_dest file {folder}/mosquitto.log
"""


def mosquitto_path() -> str | None:
    """The mosquitto binary (Debian puts it in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).is_file()), None)


class Broker:
    """``mosquitto -c`` on ``port`` (a free one by default) with its files in ``folder``."""

    def __init__(self, folder: Path, port: int | None = None, users: dict[str, str] | None = None,
                 acl: str | None = None, tls: tuple[Path, Path, Path] | None = None) -> None:  # fmt: skip
        """``tls``: (CA, server certificate, server key) PEM files: the listener speaks TLS only."""
        binary = mosquitto_path()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed: apt-get install mosquitto (Debian's package)")
        self.binary, self.folder = binary, Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_port()
        self.address = f"127.0.0.1:{self.port}"
        user = pwd.getpwuid(os.geteuid()).pw_name
        access = "allow_anonymous true"
        if users:
            access = self._secure(users, acl)
        if tls is not None:
            access += "\n" + "\n".join(f"{key} {path}" for key, path in zip(("cafile", "certfile", "keyfile"), tls))
        config = CONFIG.format(user=user, port=self.port, folder=self.folder, access=access)
        (self.folder / "mosquitto.conf").write_text(config)
        self.process: subprocess.Popen | None = None

    def _secure(self, users: dict[str, str], acl: str | None) -> str:
        """A password file (mosquitto_passwd, hashed) and an ACL file; their config lines."""
        passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        passwords = self.folder / "passwords"
        passwords.unlink(missing_ok=True)
        for i, (name, password) in enumerate(users.items()):
            subprocess.run([passwd, *(["-c"] if i == 0 else []), "-b", str(passwords), name, password], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        lines = ["allow_anonymous false", f"password_file {passwords}"]
        if acl is not None:
            (self.folder / "acl").write_text(acl)
            lines.append(f"acl_file {self.folder / 'acl'}")
        return "\n".join(lines)

    def start(self) -> Broker:
        self.process = subprocess.Popen([self.binary, "-c", str(self.folder / "mosquitto.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not start on port {self.port}: see {self.folder / 'mosquitto.log'}")

    def stop(self) -> None:
        """A clean stop (it saves its retained messages and sessions)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
