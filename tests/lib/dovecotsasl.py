"""A private Dovecot running only its auth service, for Postfix's
`smtpd_sasl_type = dovecot`: a passwd-file of test users (plain-text
passwords), the auth socket at ROOT/auth (an absolute smtpd_sasl_path works
without chroot), no mail protocols. Started in the foreground and stopped
by its PID (sifttest.Proc)."""

import os
import grp
import pwd

import sifttest


class DovecotSASL:
    def __init__(self, root, users):
        self.root = root
        os.makedirs(root, exist_ok=True)
        os.chmod(root, 0o755)
        self.socket = os.path.join(root, 'auth')
        self.conf = os.path.join(root, 'dovecot.conf')
        passwd = os.path.join(root, 'passwd')
        with open(passwd, 'w') as f:
            for u, p in users.items():
                f.write('%s:{PLAIN}%s::::::\n' % (u, p))
        nogroup = grp.getgrgid(pwd.getpwnam('nobody').pw_gid).gr_name
        with open(self.conf, 'w') as f:
            f.write('''# private test instance: SASL authentication for Postfix only
base_dir = %(root)s/run
state_dir = %(root)s/state
log_path = %(root)s/dovecot.log
protocols =
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %(passwd)s
}
userdb {
  driver = static
  args = uid=nobody gid=%(nogroup)s home=/nonexistent
}
service auth {
  unix_listener %(sock)s {
    mode = 0666
  }
}
service anvil {
  chroot =
}
''' % {'root': root, 'passwd': passwd, 'nogroup': nogroup, 'sock': self.socket})
        self.proc = None

    def start(self):
        self.proc = sifttest.Proc(['/usr/sbin/dovecot', '-F', '-c', self.conf],
                                  log=os.path.join(self.root, 'dovecot.stderr'),
                                  unix=self.socket, name='dovecot')
        self.proc.start()
        return self

    def stop(self):
        if self.proc:
            self.proc.stop()
            self.proc = None

    def postfix_main(self):
        """main.cf settings for a sifttest.Postfix(main=...)."""
        return {'smtpd_sasl_auth_enable': 'yes', 'smtpd_sasl_type': 'dovecot',
                'smtpd_sasl_path': self.socket, 'smtpd_tls_auth_only': 'no',
                'broken_sasl_auth_clients': 'no'}
