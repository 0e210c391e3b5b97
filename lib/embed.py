#!/usr/bin/python3
"""Writes a C file defining NAME[] (the input file's bytes, NUL-terminated)
and NAME_len, so that a file (the status page) is part of the binary."""
import sys

src, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, 'rb').read()
with open(out, 'w') as f:
    f.write('/* Generated from %s by lib/embed.py: do not edit. */\n' % src.rsplit('/', 1)[-1])
    f.write('#include <stddef.h>\n')
    f.write('extern const char %s[];\nextern const size_t %s_len;\n' % (name, name))
    f.write('const char %s[] = {\n' % name)
    for i in range(0, len(data), 16):
        f.write('\t' + ', '.join('%d' % b for b in data[i:i + 16]) + ',\n')
    f.write('\t0};\n')
    f.write('const size_t %s_len = %d;\n' % (name, len(data)))
