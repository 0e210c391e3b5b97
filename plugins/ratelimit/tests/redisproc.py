"""A private redis-server for the tests: no persistence, loopback TCP on a
free port and/or a unix socket, optional password; started and stopped by
PID (sifttest.Proc). restart() stops it and starts a new one on the same
port and socket (the data is gone, as after a crash without persistence)."""

import os
import subprocess

import sifttest


class Redis:
    def __init__(self, tmp, name='redis', password=None, unix=False, port=None):
        self.tmp = tmp
        self.name = name
        self.port = port or sifttest.free_port()
        self.password = password
        self.sock = os.path.join(tmp, name + '.sock') if unix else None
        self.proc = None

    def argv(self):
        a = ['/usr/bin/redis-server', '--bind', '127.0.0.1', '--port', str(self.port),
             '--save', '', '--appendonly', 'no', '--daemonize', 'no',
             '--dir', self.tmp, '--protected-mode', 'no']
        if self.sock:
            # 0777 in a private directory: policyd connects after dropping
            # its privileges (to sifttest.daemon_user()).
            a += ['--unixsocket', self.sock, '--unixsocketperm', '777']
        if self.password:
            a += ['--requirepass', self.password]
        return a

    def start(self):
        self.proc = sifttest.Proc(self.argv(), log=os.path.join(self.tmp, self.name + '.log'),
                                  port=self.port, name=self.name)
        self.proc.start()
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def kill(self):
        """SIGKILL, as a crash."""
        import signal
        if self.proc and self.proc.alive():
            self.proc.signal(signal.SIGKILL)
            self.proc.popen.wait(10)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def cli(self, *args):
        a = ['/usr/bin/redis-cli', '-p', str(self.port)]
        if self.password:
            a += ['--no-auth-warning', '-a', self.password]
        r = subprocess.run(a + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=10)
        return r.stdout.strip()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
