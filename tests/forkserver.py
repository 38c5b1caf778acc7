"""Run the CLIs in real processes without paying the interpreter start-up for each one.

Importing torch, Lightning, Hydra and W&B costs about ten seconds of one core per process, and the
end-to-end tests start over a hundred. A *fork server* imports them once, then forks one child per
command: each child is a real process (its own pid, exit status, signals, file descriptors, working
directory and environment), started from an interpreter that already holds the modules.

The server never runs a tensor operation, so no OpenMP thread pool exists when it forks (forking a
process whose thread pool has started can deadlock the child). Each request goes over a Unix socket;
a per-request waiter process forks the command, reports its pid, waits for it and reports its exit
status (negative signal number when a signal ended it, as ``subprocess`` does).

``CONVNETLAB_FORKSERVER=0`` turns it off: commands then start as ``python -m`` subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRELOAD = (
    "torch", "torchvision", "pytorch_lightning", "torchmetrics", "hydra", "omegaconf", "wandb", "matplotlib.pyplot",
    "sklearn.linear_model", "captum.attr", "convnetlab.cli.train", "convnetlab.cli.evaluate", "convnetlab.cli.compare",
    "convnetlab.cli.data", "convnetlab.cli.embed", "convnetlab.cli.visualize", "convnetlab.cli.probe",
)


# ----------------------------------------------------------------------------- server side
def _child(request: dict) -> None:
    """In the forked child: become the command (never returns)."""
    code = 1
    try:
        if request.get("new_session"):
            os.setsid()
        os.chdir(request["cwd"])
        sys.path.insert(0, os.getcwd())  # as `python -m` does: modules in the working directory are importable
        os.environ.clear()
        os.environ.update(request["env"])
        for fd, path, mode in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY),
                               (2, request["stderr"], os.O_WRONLY)):
            os.dup2(os.open(path, mode), fd)
        import random
        import runpy
        import warnings

        import numpy

        random.seed()  # a fresh interpreter seeds these from the OS, not from the server's state
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))
        if request["env"].get("PYTHONWARNINGS"):
            warnings.simplefilter(request["env"]["PYTHONWARNINGS"])
        sys.argv = [request["module"], *request["args"]]
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if not isinstance(exit_.code, int | None):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - report like the interpreter does for an uncaught exception
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code)


def _wait_and_report(connection: socket.socket, request: dict) -> None:
    """In the per-request waiter: fork the command, report its pid, then its exit status."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        connection.close()
        _child(request)
    connection.sendall((json.dumps({"pid": pid}) + "\n").encode())
    _, status = os.waitpid(pid, 0)
    code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
    connection.sendall((json.dumps({"returncode": code}) + "\n").encode())
    os._exit(0)


def serve(socket_path: str) -> None:
    for name in PRELOAD:
        __import__(name)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped automatically
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    server.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = server.accept()
        request = json.loads(connection.makefile().readline())
        if os.fork() == 0:
            server.close()
            _wait_and_report(connection, request)
        connection.close()


# ----------------------------------------------------------------------------- client side
class ForkedProcess:
    """A command started by the fork server: ``pid``, ``wait()``, ``returncode``, ``stdout``/``stderr`` text."""

    def __init__(self, connection: socket.socket, out: Path, err: Path) -> None:
        self._connection, self._reader = connection, connection.makefile()
        self._out, self._err = out, err
        self.pid: int = json.loads(self._reader.readline())["pid"]
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._connection.settimeout(timeout)
            try:
                line = self._reader.readline()
            except TimeoutError:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout) from None
            self.returncode = json.loads(line)["returncode"]
            self._connection.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @property
    def stdout(self) -> str:
        return self._out.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self._err.read_text(errors="replace")


class ForkServer:
    """The client: starts the server on first use, then ``popen``/``run`` commands through it."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="convnetlab-forkserver-"))
        self._socket = self._dir / "socket"
        self._process: subprocess.Popen | None = None

    def _start(self, env: dict) -> None:
        self._process = subprocess.Popen([sys.executable, __file__, str(self._socket)], env=env,
                                         stdout=subprocess.PIPE, text=True)
        if self._process.stdout.readline().strip() != "ready":
            raise RuntimeError("the CLI fork server did not start")

    def popen(self, module: str, args: list[str], cwd: Path, env: dict, new_session: bool = False) -> ForkedProcess:
        if self._process is None or self._process.poll() is not None:
            self._start(env)
        handle, out = tempfile.mkstemp(dir=self._dir, suffix=".out")
        os.close(handle)
        handle, err = tempfile.mkstemp(dir=self._dir, suffix=".err")
        os.close(handle)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(str(self._socket))
        request = {"module": module, "args": list(args), "cwd": str(cwd), "env": dict(env), "stdout": out,
                   "stderr": err, "new_session": new_session}
        connection.sendall((json.dumps(request) + "\n").encode())
        return ForkedProcess(connection, Path(out), Path(err))

    def run(self, module: str, args: list[str], cwd: Path, env: dict, timeout: float = 600,
            new_session: bool = False) -> subprocess.CompletedProcess:
        """Like ``subprocess.run([python, -m, module, *args], capture_output=True, text=True)``."""
        if os.environ.get("CONVNETLAB_FORKSERVER", "1") == "0":
            return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                                  text=True, timeout=timeout, start_new_session=new_session)
        process = self.popen(module, args, cwd, env, new_session=new_session)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
        return subprocess.CompletedProcess([module, *args], process.returncode, process.stdout, process.stderr)

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    serve(sys.argv[1])
