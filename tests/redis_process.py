"""A redis-server of the tests' own (a real process, append-only on), to shut down, kill and
start again while the service works against it."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

AOF_DIR = "appendonlydir"  # redis-server's appenddirname: its append-only files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """``redis-server`` on a free loopback port, its data under ``folder``."""

    def __init__(
        self, folder: Path, fsync: str = "always", replica_of: RedisProcess | None = None
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the tests need redis-server (Debian: apt-get install redis-server)")
        self.binary, self.folder, self.fsync = binary, folder, fsync
        self.port = free_port()
        self.replica_of = replica_of
        self.process: subprocess.Popen[bytes] | None = None
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers, its data loaded; it must be this process that
        answers (a port another process took meanwhile would send the test's writes
        elsewhere)."""
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.fsync,
                "--save",
                "",
                "--logfile",
                str(self.folder / "redis.log"),
                *self._replicating(),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            deadline = time.monotonic() + 10
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start (port {self.port} taken?)")
                try:
                    if int(client.info("server")["process_id"]) != self.process.pid:
                        raise RuntimeError(f"another process answers on port {self.port}")
                    if not int(client.info("persistence")["loading"]):  # INFO answers while
                        return  # the append-only file is read; other commands do not
                except redis.BusyLoadingError:
                    pass
                except (redis.ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                time.sleep(0.02)
        finally:
            client.close()

    def wait_loaded(self, timeout: float = 10) -> None:
        """Until its data set is loaded (INFO answers while the append-only files are still
        being read; other commands answer LOADING)."""
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            deadline = time.monotonic() + timeout
            while int(client.info("persistence")["loading"]):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on {self.port} still loading")
                time.sleep(0.01)
        finally:
            client.close()

    def _replicating(self) -> list[str]:
        return ["--replicaof", "127.0.0.1", str(self.replica_of.port)] if self.replica_of else []

    def shutdown(self) -> None:
        """SHUTDOWN, as an operator or a service manager stops Redis: its writes are kept."""
        client = redis.Redis(port=self.port)
        try:
            client.shutdown(nosave=False)
        except redis.ConnectionError:
            pass  # the answer to SHUTDOWN is the connection closing
        finally:
            client.close()
        self._reap()

    def kill(self) -> None:
        """SIGKILL: what was not yet written to disk (``fsync`` everysec: up to a second) is
        lost."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
        self._reap()

    def keep(self) -> None:
        """Take the append-only files as they are now as what the last fsync made durable:
        :meth:`crash` loses every write after this moment. Every write answered so far is
        in them first (with everysec, Redis may hold writes back while an fsync runs)."""
        client = redis.Redis(port=self.port)
        try:
            deadline = time.monotonic() + 5
            while int(client.info("persistence")["aof_buffer_length"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server kept writes back from its files for 5 s")
                time.sleep(0.005)
        finally:
            client.close()
        kept = self.folder / "kept"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(self.folder / AOF_DIR, kept)

    def crash(self) -> None:
        """SIGKILL, and the writes since :meth:`keep` lost with it, as when the machine goes
        down between two fsyncs (``fsync`` everysec: up to a second's writes). A SIGKILL
        alone loses next to nothing: what Redis wrote is in the kernel's page cache."""
        self.kill()
        shutil.rmtree(self.folder / AOF_DIR)
        (self.folder / "kept").rename(self.folder / AOF_DIR)

    def restart(self) -> None:
        self.shutdown()
        self.start()

    def _reap(self) -> None:
        if self.process is not None:
            self.process.wait(timeout=10)
            self.process = None

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not gone within 5 s (a replica may linger)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self._reap()


class SentinelProcess:
    """``redis-server --sentinel`` watching ``master`` as ``name``, quick to act (a master
    is down after 1 s without an answer)."""

    def __init__(self, folder: Path, master: RedisProcess, name: str = "notifier") -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "sentinel.conf").write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"logfile {folder / 'sentinel.log'}\n"
            f"sentinel monitor {name} 127.0.0.1 {master.port} 2\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 4000\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        self.process = subprocess.Popen(
            [master.binary, str(folder / "sentinel.conf"), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        """SIGTERM; SIGKILL if it has not gone within 5 s."""
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


class Sentinels:
    """A master, a replica and three Sentinels, all real processes on loopback. If they do
    not all come up, those that did are stopped."""

    def __init__(self, folder: Path) -> None:
        self.master = RedisProcess(folder / "a")
        self.replica = RedisProcess(folder / "b", replica_of=self.master)
        self.sentinels: list[SentinelProcess] = []
        try:
            self.master.start()
            self.replica.start()
            for i in range(3):
                self.sentinels.append(SentinelProcess(folder / f"s{i}", self.master))
            self.wait(lambda: self.replica_in_sync() and self.sentinels_agree())
        except BaseException:
            self.stop()
            raise

    @property
    def addresses(self) -> str:
        return ",".join(s.address for s in self.sentinels)

    def master_port(self) -> int | None:
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=0.5)
            try:
                found = client.sentinel_get_master_addr_by_name("notifier")
                if found:
                    return int(found[1])
            except (redis.RedisError, OSError):
                continue
            finally:
                client.close()
        return None

    def replica_in_sync(self) -> bool:
        client = redis.Redis(port=self.replica.port, socket_timeout=0.5)
        try:
            return client.info("replication").get("master_link_status") == "up"
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def sentinels_agree(self) -> bool:
        """Every Sentinel knows the replica and the other Sentinels (so it can fail over)."""
        for sentinel in self.sentinels:
            client = redis.Redis(port=sentinel.port, socket_timeout=0.5)
            try:
                master = client.sentinel_master("notifier")
                if int(master["num-slaves"]) < 1 or int(master["num-other-sentinels"]) < 2:
                    return False
            except (redis.RedisError, OSError, KeyError):
                return False
            finally:
                client.close()
        return True

    @staticmethod
    def wait(condition: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise TimeoutError("the Redis processes did not come to the state wanted")
            time.sleep(0.05)

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        self.replica.stop()
        self.master.stop()
