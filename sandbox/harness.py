"""The in-sandbox test runner: what a forked child does with one job (stdlib only).

What it is: the child side of sandbox/forkserver.py. ``child_main`` sets up the child (new
session, work directory, stdout/stderr to files, only the report pipe left open, rlimits) and
``_run_job`` compiles the tests *before* the program runs, installs an audit hook, and starts a
second thread (``_runner``) that runs the program in a fresh namespace, then every test unit
itself (each top-level ``assert`` and each top-level call such as ``check(f)`` is one test;
top-level ``test_*`` functions are called after). The main thread then writes the verdict
through a close-on-exec pipe, prefixed by a per-job nonce that only it holds (it never runs
program code). The host accepts a pass only from a report carrying the nonce with as many
passed tests as it counted itself (``count_tests``). So exit(0) before the tests, fake success
prints and os._exit give no report (not a pass); rebinding builtins.AssertionError does not touch
``assert``; builtins are restored and test-file functions rebound before each test.

The audit hook blocks frames, gc introspection, ctypes and the C test modules, tracing,
/proc/*/mem (and symlinks), exec/spawn and ``__code__`` swaps, so program code cannot reach the
nonce or the runner's state. Side effect: programs cannot install signal handlers (they run off
the main thread), spawn processes or use ctypes; files whose path has a component ``mem`` or
``environ`` cannot be opened.
What it does not cover: a CPython bug that escapes the audit hook; a test that an always-true
object satisfies (``__eq__`` returning True): a weak test is a weak test; ``unittest.TestCase``
classes are not collected. Isolation (namespaces, read-only filesystem, no network) is
bubblewrap's job, or the rlimit backend's (forkserver.py's ``contain`` under unshare), not this
file's.
"""

import _thread
import ast
import builtins
import os
import resource
import signal
import sys


def _hook(event, args):
    # No global lookups here: everything is a literal or a method of a builtin type, so program
    # code cannot disarm the hook by patching builtins or this module's globals.
    if event in ("sys._getframe", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
                 "gc.get_referents", "sys.settrace", "sys.setprofile", "sys.addaudithook",
                 "os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen",
                 "os.forkpty", "pty.spawn", "cpython.run_command",
                 "sys.monitoring.register_callback", "sys._settraceallthreads",
                 "sys._setprofileallthreads", "builtins.breakpoint", "os.startfile"):
        raise ValueError("sandbox: " + event + " is disabled")
    if event.startswith("ctypes.") or (event == "import" and args[0] in (
            "ctypes", "_ctypes", "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase",
            "_testsinglephase", "_xxsubinterpreters", "_xxinterpchannels", "_posixsubprocess",
            "_ctypes_test")):
        raise ImportError("sandbox: " + (args[0] if event == "import" else "ctypes") + " is disabled")
    if event == "object.__getattr__" and args[1] in ("tb_frame", "gi_frame", "cr_frame", "ag_frame",
                                                       "f_back", "gi_yieldfrom"):
        raise AttributeError("sandbox: frame access is disabled")
    if event == "object.__setattr__" and args[1] in ("__code__", "__class__"):
        raise AttributeError("sandbox: replacing code objects is disabled")
    if event == "os.symlink":
        raise PermissionError("sandbox: symlinks are disabled")
    if event == "open":
        p = args[0]
        if p.__class__ is b"".__class__:
            p = p.decode("utf-8", "replace")
        if p.__class__ is "".__class__:
            parts = p.split("/")
            if "mem" in parts or "map_files" in parts or "environ" in parts:
                raise PermissionError("sandbox: " + p + " is not readable")


def _classify(tests):
    """(kind, name, statement) per top-level statement: kind 'test', 'def' (a ``test*`` function,
    called after the other units), 'fdef' (another function) or 'setup'."""
    out = []
    for stmt in ast.parse(tests, "<tests>").body:
        if isinstance(stmt, ast.Assert) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
            seg = (ast.get_source_segment(tests, stmt) or "").strip().splitlines()
            out.append(("test", f"line {stmt.lineno}: {(seg[0] if seg else '')[:200]}", stmt))
        elif isinstance(stmt, ast.FunctionDef) and stmt.name.startswith("test"):
            out.append(("def", stmt.name, stmt))
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(("fdef", stmt.name, stmt))  # async test functions are not collected
        else:
            out.append(("setup", f"line {stmt.lineno}", stmt))
    return out


def split_tests(tests):
    """Compiled units of a test source: (kind, name, code)."""
    return [(kind, name, compile(ast.Module([stmt], []), "<tests>", "exec", dont_inherit=True, optimize=0))
            for kind, name, stmt in _classify(tests)]


def count_tests(tests):
    """How many tests a test source holds (the host checks a report against this)."""
    return sum(1 for kind, _, _ in _classify(tests) if kind in ("test", "def"))


def _set_limits(lim):
    mb = 1 << 20
    cpu = max(1, int(lim["cpu_s"] + 0.999))
    pairs = [(resource.RLIMIT_CPU, (cpu, cpu + 1)),
             (resource.RLIMIT_FSIZE, (lim["file_mb"] * mb, lim["file_mb"] * mb)),
             (resource.RLIMIT_CORE, (0, 0))]
    if lim.get("memory_mb"):
        pairs.append((resource.RLIMIT_AS, (lim["memory_mb"] * mb, lim["memory_mb"] * mb)))
    if lim.get("nproc"):
        pairs.append((resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"])))
    for what, value in pairs:
        resource.setrlimit(what, value)


def child_main(job, wfd, workdir):
    """Runs in the forked child: never returns."""
    os.setsid()
    os.chdir(workdir)
    out = os.open("stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    err = os.open("stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    nul = os.open("/dev/null", os.O_RDONLY)
    os.dup2(nul, 0)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.closerange(3, wfd)
    os.closerange(wfd + 1, 1 << 16)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    sys.stdout.reconfigure(line_buffering=True)  # same objects, now on the job's files (fds 1, 2)
    sys.stderr.reconfigure(line_buffering=True)
    _run_job(job["program"], job["tests"], job["limits"], job["nonce"].encode(), wfd)


def _run_job(program, tests, limits, nonce, wfd):
    """The main thread: holds the nonce and never runs program code; the tests run in a thread.

    Program code could only reach this frame through a frame object; every source of one is
    audited except a Python signal handler, which runs in the main thread only and can only be
    installed from it. So the program and tests run in a second thread, no Python-level signal
    handler is left here, and after the start this thread only waits on a lock (C code, nothing
    allocated that could start a collection and run a program's finalizer here) and writes.
    """
    _write, _exit, _BE = os.write, os._exit, BaseException
    box, done = [], _thread.allocate_lock()
    done.acquire()
    try:
        units = tuple(split_tests(tests))
        prog, error = compile(program, "<program>", "exec", dont_inherit=True, optimize=0), ""
    except _BE as exc:
        units, prog, error = (), None, f"{type(exc).__name__}: {exc}"[:500]
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the only Python-level handler a child inherits
    _set_limits(limits)
    sys.addaudithook(_hook)
    _thread.start_new_thread(_runner, (prog, units, error, box, done))
    done.acquire()
    if box:
        _write(wfd, nonce + b"\n" + box[0])
    _exit(0)


def _runner(prog, units, error, box, done):
    """The test thread: run the program, then each test unit; leave the verdict in ``box``."""
    # Everything needed after the program has run is bound to a local here, before.
    _exec, _repr, _BE, _str, _code_of = exec, repr, BaseException, str, (lambda f: f.__code__)
    _getitem, _bdict, _RuntimeError = str.__getitem__, builtins.__dict__, RuntimeError
    _flush = sys.stdout.flush, sys.stderr.flush
    _clear, _update, _copy, _tuple, _slice, _type = dict.clear, dict.update, dict.copy, tuple, slice, type

    def msg(exc):
        try:
            return _getitem(_getitem(_type(exc).__name__, _slice(0, 100)) + ": "
                            + _getitem(_str(exc), _slice(0, 400)), _slice(0, 500))
        except _BE:
            return "<unprintable exception>"

    phase, codes, failed, defs = "compile", "", (), ()
    saved = _copy(_bdict)
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        if prog is not None:
            phase = "program"
            try:
                _exec(prog, ns)
                phase = "tests"
            except _BE as exc:
                error = msg(exc)
        if phase == "tests":
            for kind, name, code in units:
                _clear(_bdict)
                _update(_bdict, saved)
                ns["__builtins__"] = builtins
                for dname, fn, _, _ in defs:
                    ns[dname] = fn
                try:
                    _exec(code, ns)
                    if kind in ("def", "fdef"):
                        fn = ns[name]
                        defs = defs + ((name, fn, _code_of(fn), kind),)
                    elif kind == "test":
                        codes += "P"
                except _BE as exc:
                    if kind == "test":
                        codes += "F"
                        failed = failed + ((name, msg(exc)),)
                    else:
                        error = "setup " + name + ": " + msg(exc)
                        break
            if not error:
                for dname, fn, fcode, dkind in defs:
                    if dkind != "def":
                        continue
                    _clear(_bdict)
                    _update(_bdict, saved)
                    ns["__builtins__"] = builtins
                    for other, ofn, _, _ in defs:
                        ns[other] = ofn
                    try:
                        if _code_of(fn) is not fcode:
                            raise _RuntimeError("test function was tampered with")
                        fn()
                        codes += "P"
                    except _BE as exc:
                        codes += "F"
                        failed = failed + ((dname + "()", msg(exc)),)
        for f in _flush:
            try:
                f()
            except _BE:
                pass
        box.append(_repr((phase, error, codes, _tuple(failed))).encode("utf-8", "replace"))
    finally:
        done.release()
