"""The attack suite: one test per attack; each asserts the engine survives (the ``run`` fixture runs a
passing job afterwards), the result is not ``passed``, and the host is untouched."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from sandbox.bubblewrap import BubblewrapPool
from sandbox.protocol import Job, Limits

SMALL = Limits(timeout_s=3.0, cpu_s=2.0, memory_mb=256, file_mb=4, max_processes=16, output_bytes=4096)

REPO = Path(__file__).resolve().parents[2]


def host_processes() -> int:
    """How many processes descend from this test process (other users of the machine don't count)."""
    parent: dict[int, int] = {}
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                parent[int(p)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    mine, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, pp in parent.items() if pp in mine and pid not in mine}
        mine |= new
        grew = bool(new)
    return len(mine) - 1


def test_fork_bomb(run):
    before = host_processes()
    r = run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
            timeout_s=2.0)
    assert r.status in ("killed", "timeout")
    assert host_processes() < before + 10


def test_memory_bomb(run):
    r = run("chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))\n", memory_mb=128)
    assert r.status == "memory"
    assert r.peak_memory_mb < 200


def test_memory_bomb_across_processes(run):
    r = run("import os, time\nfor _ in range(8):\n    if os.fork() == 0:\n"
            "        b = bytearray(150 * 2**20)\n        b[::4096] = b'x' * len(b[::4096])\n"
            "        time.sleep(10)\n        os._exit(0)\ntime.sleep(10)\n",
            memory_mb=256, max_processes=16, timeout_s=5.0)
    assert r.status == "memory"


def test_infinite_loop(run):
    r = run("while True:\n    pass\n", timeout_s=1.0, cpu_s=5.0)
    assert r.status == "timeout"
    assert r.duration_s < 2.5


def test_cpu_loop_ignoring_signals(run):
    r = run("import signal\nsigs = (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT, signal.SIGALRM)\n"
            "for s in sigs:\n    try:\n        signal.signal(s, signal.SIG_IGN)\n"
            "    except ValueError:\n        pass\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, sigs)\nwhile True:\n    pass\n",
            timeout_s=3.0, cpu_s=1.0)
    assert r.status == "timeout"


@pytest.mark.parametrize("where", ["home", "host_tmp", "repository"])
def test_write_outside_workdir(run, tmp_path, where):
    base = {"home": Path.home(), "host_tmp": tmp_path, "repository": REPO}[where]
    target = base / f"pwned-{uuid.uuid4().hex}"
    r = run(f"open({str(target)!r}, 'w').write('pwned')\n", tests=f"assert open({str(target)!r}).read()")
    assert r.status != "passed"
    assert not target.exists()


def test_read_environment_secrets(monkeypatch):
    secret = "s3cr3t-" + uuid.uuid4().hex
    monkeypatch.setenv("AUTODIDACT_TEST_TOKEN", secret)
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{secret}@127.0.0.1/db")
    with BubblewrapPool(concurrency=1, disk_mb=8) as pool:
        prog = ("import os\nleak = repr(dict(os.environ))\n"
                "for p in ('/proc/1/environ', '/proc/self/environ'):\n"
                "    try:\n        leak += open(p).read()\n"
                "    except Exception as e:\n        leak += repr(e)\n"
                "print(leak)\n")
        r = pool.execute([Job(program=prog, tests=f"assert {secret!r} in leak", limits=SMALL)])[0]
        assert r.status != "passed"
        assert secret not in r.stdout + r.stderr  # (the test source itself names it)
        assert "PATH" in r.stdout
        assert pool.execute([Job(program="x = 1", tests="assert x == 1")])[0].passed


def test_network_loopback_and_dns(run, listener):
    port, assert_untouched = listener
    r = run("import socket\nok = []\n"
            f"try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=1); ok.append('tcp')\n"
            "except OSError:\n    pass\n"
            "try:\n    socket.getaddrinfo('pypi.org', 443); ok.append('dns')\n"
            "except OSError:\n    pass\n",
            tests="assert 'tcp' in ok\nassert 'dns' in ok")
    assert r.status == "failed" and len(r.failed_tests) == 2
    assert_untouched()


def test_kill_the_parent(run):
    r = run("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n"
            "import time\ntime.sleep(1)\n")
    assert r.status != "passed"


def test_huge_stdout(run):
    r = run("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", output_bytes=1000)
    assert r.status != "passed"
    assert len(r.stdout) < 1200


def test_output_file_swapped_for_a_fifo(run):
    r = run("import os\nos.remove('stdout')\nos.mkfifo('stdout')\n", tests="assert False")
    assert r.status == "failed" and r.duration_s < 2


def test_children_left_sleeping(pool):
    before = host_processes()
    prog = ("import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        os.setsid()\n"
            "        time.sleep(60)\n        os._exit(0)\n")
    r = pool.execute([Job(program=prog, tests="assert False", limits=SMALL)])[0]
    assert r.status == "failed"
    # one worker, next job: nothing but bubblewrap's init, the server and the job itself is left
    with BubblewrapPool(concurrency=1, disk_mb=8) as single:
        single.execute([Job(program=prog, tests="assert True", limits=SMALL)])
        look = single.execute([Job(program="import os\nn = sum(p.isdigit() for p in os.listdir('/proc'))",
                                   tests="assert n <= 3, n")])[0]
        assert look.passed, look
    assert host_processes() < before + 5


@pytest.mark.parametrize("exit_call", ["import sys\nsys.exit(0)", "raise SystemExit(0)",
                                       "import os\nos._exit(0)"])
def test_exit_zero_before_tests(run, exit_call):
    r = run("def f():\n    return 1\n" + exit_call + "\n", tests="assert f() == 2")
    assert r.status == "error"


def test_fake_success_print(run):
    r = run("print('3 passed in 0.01s')\nprint('OK')\nimport os\nos._exit(0)\n", tests="assert False")
    assert r.status == "error"
    assert "OK" in r.stdout


TAMPERING = {
    "rebind AssertionError": "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n",
    "patch the harness module": "import __main__, harness\nharness.split_tests = lambda t: []\n"
                                "harness.count_tests = lambda t: 0\n__main__.run_one = None\n",
    "walk frames for the nonce": "import sys\nf = sys._getframe(1)\nwhile f:\n"
                                 "    f.f_locals.update(codes='P')\n    f = f.f_back\n",
    "gc for the nonce": "import gc\nsecrets = [o for o in gc.get_objects() if isinstance(o, bytes)]\n",
    "forge a report": "import os\nfor fd in range(3, 64):\n    try:\n"
                      "        os.write(fd, b\"0\" * 32 + b\"\\n('tests', '', 'P', ())\")\n"
                      "    except OSError:\n        pass\nos._exit(0)\n",
    "traceback frames": "try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_back\n",
    "settrace": "import sys\nsys.settrace(lambda *a: None)\n",
    "exec a fresh interpreter": "import subprocess\nsubprocess.run(['/usr/bin/python3', '-c', 'print(1)'])\n",
    "read own memory": "open('/proc/self/mem', 'rb')\n",
    "read own memory via a symlink": "import os\nos.symlink('/proc/self/mem', 'm')\nopen('m', 'rb')\n",
    "read own memory via dir_fd": "import os\nd = os.open('/proc/self', os.O_RDONLY)\n"
                                  "os.open('mem', os.O_RDONLY, dir_fd=d)\n",
    "signal handler frames": "import signal\nsignal.signal(signal.SIGALRM, lambda s, f: f.f_back)\n"
                             "signal.setitimer(signal.ITIMER_REAL, 0.001)\n",
    "testing modules": "import _testcapi\n",
    "ctypes": "import ctypes\n",
    "swap the test's code": "def g():\n    globals()['test_a'].__code__ = (lambda: None).__code__\n"
                            "    return True\n",
    "rebind a test function": "def g():\n    globals()['test_a'] = lambda: None\n    globals()['check'] = "
                              "lambda c: None\n    return True\n",
}
TAMPER_TESTS = ("def check(c):\n    assert c() == 2\n"
                "def test_a():\n    assert f() == 2\n"
                "assert g() if 'g' in globals() else True\n"
                "check(f)\n")


def test_tampering_suite_passes_an_honest_program(run):
    r = run("def f():\n    return 2\ndef g():\n    return True\n", tests=TAMPER_TESTS)
    assert r.status == "passed" and r.n_tests == 3


@pytest.mark.parametrize("attack", sorted(TAMPERING))
def test_tampering_with_the_test_runner(run, attack):
    r = run("def f():\n    return 1\n" + TAMPERING[attack], tests=TAMPER_TESTS)
    assert r.status in ("failed", "error"), r


def test_patching_builtins_used_by_tests(run):
    r = run("def f():\n    return [1]\nimport builtins\nbuiltins.len = lambda x: 2\n",
            tests="assert len(f()) == 2")
    assert r.status == "failed"


def test_ctypes_segfault(run):
    r = run("import ctypes\nctypes.string_at(0)\n")
    assert r.status == "error"
    r = run("import faulthandler\nfaulthandler._sigsegv()\n")
    assert r.status == "killed"


def test_fill_the_disk(run):
    r = run("import os\nn = 0\nwhile True:\n    with open(f'big{n}', 'wb') as f:\n"
            "        f.write(b'x' * (3 * 2**20))\n    n += 1\n", tests="assert n > 1000", file_mb=4)
    assert r.status == "error"
    assert "No space left" in r.detail or "too large" in r.detail
    r = run("with open('/tmp/one', 'wb') as f:\n    f.write(b'x' * (8 * 2**20))\n", file_mb=4)
    assert r.status == "error"
