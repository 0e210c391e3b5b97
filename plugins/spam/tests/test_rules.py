#!/usr/bin/python3
"""The stock ruleset's local evals and the relay/header semantics that
SpamAssassin's rules rely on, through `siftctl spam check --json` with a
small ruleset naming each eval (every case: a message that hits and one
that does not):

- evals_mime.c: multipart_alternative_difference(_count),
  check_blank_line_ratio, tvd_vertical_words, check_for_uppercase,
  check_mime_multipart_ratio, check_for_ascii_text_illegal,
  check_abundant_unicode_ratio, check_base64_length, check_ma_non_text;
- evals_relay.c: the forged Received checks (AOL, Hotmail, Gmail, the
  forged trail), check_ratware_envelope_from, check_for_to_in_subject,
  check_unresolved_template, check_for_matching_env_and_hdr_from,
  check_mailfrom_matches_rcvd, html_title_subject_ratio, check_stock_info;
- evals.c: check_https_ip_mismatch, check_https_http_mismatch (registry
  boundaries, valid TLDs, the anchor count bounds), check_iframe_src,
  FreeMail's check_freemail_replyto (From and Reply-To, the freemail
  addresses of the body and of mailto: links, the limits, bulk envelope
  senders) and its welcome list; check_freemail_from over all the sender
  addresses; wildcard freemail_domains within one label; check_for_mime('mime_attachment'),
  mime_body_text_count over every text/ part, tflags nosubject; which
  text/ parts are body, rawbody and uri text (not text/calendar, nor
  text/x-vcard but in rawbody); body text's white space collapsed as
  SpamAssassin collapses it; HTMLEval over every HTML part, its count of
  open tags and of closing tags in excess;
  check_for_shifted_date with SpamAssassin's date parser (zones, asctime,
  two-digit years, Resent-Date first, a Date that does not parse skipped,
  the fetchmail lines); originating_ip_headers as the last relays;
- the URI list of uri rules (uri_list_canonicalize: numeric hosts, %-escapes,
  default ports, redirectors, "http://word", mailto: queries);
- subject_is_all_caps; check_for_missing_to_header (an empty To: is there); the EnvelopeFrom
  SpamAssassin infers (no Return-Path after a Received:);
- ReplaceTags with tags inside tag values (SpamAssassin's extra passes), a
  repeated group too large for PCRE2 (the stock __FILL_THIS_FORM_LONG*);
- relays: trusted_networks / internal_networks / msa_networks
  (X-Spam-Relays-*, check_all_trusted), ALL-TRUSTED / ALL-UNTRUSTED /
  ALL-INTERNAL / ALL-EXTERNAL ranges, a sendmail "(may be forged)" hop;
- Date:raw keeps the TAB after the colon, ALL:raw the lack of a space;
- `if can(Mail::SpamAssassin::Plugin::X::m)` only with X loaded;
- spam_rules globs, a glob matching nothing is an error naming it;
- rules scored 0 in the score set in use are not run (false in metas);
  __ rules that nothing which runs reads are not compiled.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import shutil
import struct

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', '..', 'tests', 'lib'))
import sifttest  # noqa: E402
from sifttest import check, done  # noqa: E402

BUILD = sifttest.builddir()
SIFTCTL = sifttest.program('siftctl')

RULES = r'''
loadplugin Mail::SpamAssassin::Plugin::Loaded
body     T_MADIFF     eval:multipart_alternative_difference('90', '100')
body     T_MADIFF_CNT eval:multipart_alternative_difference_count('3', '1')
body     T_BLANK      eval:check_blank_line_ratio('50', '100', '4')
body     T_VERTICAL   eval:tvd_vertical_words('50', '100')
body     T_UPPER      eval:check_for_uppercase('50', '100')
body     T_MP_RATIO   eval:check_mime_multipart_ratio('0.0', '0.2')
body     T_ASCII_ILL  eval:check_for_ascii_text_illegal()
body     T_UNICODE    eval:check_abundant_unicode_ratio('0.02')
body     T_B64_LEN    eval:check_base64_length('79')
body     T_MA_NONTEXT eval:check_ma_non_text()
body     T_STOCK      eval:check_stock_info('3')
body     T_IMG_TEXT   eval:image_to_text_ratio('all', '0.000', '0.008')
rawbody  T_IMG_RAW    eval:image_to_text_ratio('all', '0.000', '0.015')
body     T_GIF_AREA   eval:pixel_coverage('gif','180000','475000')
body     T_PNG_AREA   eval:pixel_coverage('png','180000','475000')
body     T_JPEG_AREA  eval:pixel_coverage('jpeg','180000','475000')
body     T_ALL_AREA   eval:pixel_coverage('all','62500','300000')
header   T_AOL        eval:check_for_fake_aol_relay_in_rcvd()
header   T_HOTMAIL    eval:check_for_forged_hotmail_received_headers()
header   T_NOHOTMAIL  eval:check_for_no_hotmail_received_headers()
header   T_GMAIL      eval:check_for_forged_gmail_received_headers()
header   T_TRAIL      eval:check_for_forged_received_trail()
header   T_RATWARE_EF eval:check_ratware_envelope_from()
header   T_TO_SUBJ    eval:check_for_to_in_subject('user')
header   T_TEMPLATE   eval:check_unresolved_template()
header   T_ENV_FROM   eval:check_for_matching_env_and_hdr_from()
header   T_RP_RCVD    eval:check_mailfrom_matches_rcvd()
body     T_TITLE      eval:html_title_subject_ratio('2')
body     T_HTTPS_IP   eval:check_https_ip_mismatch()
body     T_HTTPS_HTTP eval:check_https_http_mismatch('1','10')
body     T_IFRAME     eval:check_iframe_src()
util_rb_tld com net test uk
freemail_domains gmail.com yahoo.com gmx.* mail?.test
header   T_FM_REPLYTO eval:check_freemail_replyto('replyto')
header   T_FM_REPLY   eval:check_freemail_replyto('reply')
header   T_FM_FROM    eval:check_freemail_from()
header   T_FM_RT_DIGIT eval:check_freemail_header('Reply-To', '\d@')
header   T_FM_RT_ADDR eval:check_freemail_header('Reply-To:addr')
header   T_FM_ENV_DIGIT eval:check_freemail_header('EnvelopeFrom', '\d@')
header   T_ENVF_ANY   EnvelopeFrom =~ /./
util_rb_tld click
enlist_uri_host (T_LIST) bad.test !ok.bad.test click gone.test
delist_uri_host (T_LIST) gone.test
header   T_URI_LISTED eval:check_uri_host_listed('T_LIST')
blocklist_uri_host blocked.test
header   T_URI_BLOCK  eval:check_uri_host_in_blocklist()
body     T_LEN_64     eval:check_body_length('64')
header   T_ADDRS      From:addr =~ /^a\@x\.test\nc\@y\.test\nd\@z\.test\ne\@w\.test$/
header   T_NAMES      From:name =~ /^Bob\nCarol\nEve$/
header   T_ADDR_ANY   From:addr =~ /./
header   T_ADDR_WS    From:addr =~ /\s/
header   T_ENVF_RP    EnvelopeFrom =~ /^rp\@x\.test$/
util_rb_2tld co.uk
body     T_ATTACH     eval:check_for_mime('mime_attachment')
rawbody  T_QP_LONG    eval:check_for_mime('mime_qp_long_line')
body     T_NONEMPTY   /\S/
tflags   T_NONEMPTY   nosubject
body     T_WS_RUN     /^one two three\.$/
body     T_WS_NBSP    /^Four five six seven end\b/
body     T_WS_TWO     /  /
body     T_WS_PRE     /^before \n/
body     T_WS_LEAD    /^ tracker id\n/
body     T_WS_POST    /^ after $/
body     T_WS_BARE    /^(?:tracker|after)/
mimeheader T_MH_ROOT  Content-Type =~ /^text\/plain;/
mimeheader T_MH_NL    Content-Type =~ /ascii\n/
mimeheader T_MH_MULTI Content-Type =~ /^multipart\/mixed/
mimeheader T_MH_LAST  Content-Disposition =~ /last\.bin/
mimeheader T_MH_FIRST Content-Disposition =~ /first\.bin/
body     T_HT_EXISTS  eval:html_tag_exists('head')
body     T_HT_BAL     eval:html_tag_balance('b', '!= 0')
body     T_HT_RATIO   eval:html_image_ratio('0.000', '0.010')
body     T_HT_TEXT    eval:html_text_match('title', 'second part')
body     T_HT_INVALID eval:html_test('font_invalid_color')
body     T_HT_FACE    eval:html_test('font_face_bad')
body     T_HT_EMBEDS  eval:html_test('embeds')
body     T_HT_OBF     eval:html_range('obfuscation_ratio', '0.1', '0.5')
body     T_HT_OBF_ANY eval:html_eval('obfuscation_ratio', '>= 0')
body     T_HT_IMGONLY eval:html_image_only(0, 1000)
body     T_PF_EPI     eval:check_msg_parse_flags('mime_epilogue_exists')
body     T_PF_NOH     eval:check_msg_parse_flags('missing_mime_headers')
meta     T_EMPTY      !T_ATTACH && !T_NONEMPTY
body     T_HTML_ONLY  eval:check_for_mime_html_only()
body     T_CAL_BODY   /CALMARK/
rawbody  T_CAL_RAW    /CALMARK/
uri      T_CAL_URI    /cal-uri\.test/
body     T_VCARD_BODY /VCARDMARK/
rawbody  T_VCARD_RAW  /VCARDMARK/
body     T_ENR_BODY   /ENRICHMARK/
header   T_PAST_96    eval:check_for_shifted_date('undef', '-96')
header   T_PAST_12_24 eval:check_for_shifted_date('-24', '-12')
header   T_PAST_24_48 eval:check_for_shifted_date('-48', '-24')
header   T_DOTCOM     eval:check_for_no_rdns_dotcom_helo()
header   T_ORIG_RELAY X-Spam-Relays-Untrusted =~ /\] \[ ip=198\.51\.100\.9 rdns= helo= by= /
replace_tag  T_INNER  (?:pizza|pasta)
replace_tag  T_OUTER  fresh\s<T_INNER>
body     T_NESTED_TAG /<T_OUTER>\stoday/i
replace_rules T_NESTED_TAG
header   T_MISSING_TO eval:check_for_missing_to_header()
header   T_FROM_DIFF  eval:check_equal_from_domains()
header   T_ALL_CAPS   eval:subject_is_all_caps()
uri      T_URI_IP     m{^https?://192\.0\.2\.1\b}
uri      T_URI_PORT   m{^http://a\.test/x$}
uri      T_URI_TARGET m{^http://target\.test/path$}
uri      T_URI_WWW    m{^http://www\.example\.com/$}
uri      T_URI_MAILTO m{^mailto:bob\@a\.test$}
uri      T_BARE_SUBJ  m{^http://deals\.com$}
uri      T_BARE_PATH  m{^http://cheap-pills\.com/buy$}
uri      T_BARE_END   m{^http://last-one\.net$}
uri      T_BARE_CASE  m{^http://UPPER\.NET/Path$}
uri      T_BARE_PORT  m{^http://a\.b\.co\.uk:8080/x$}
uri      T_BARE_UK    m{^http://host\.uk$}
uri      T_BARE_THIRD m{^http://a_b\.x\.com$}
uri      T_BARE_ADDR  m{^http://y\.com/a\@b\.com$}
uri      T_BARE_NOT   m{^http://(?:foo\.bar|file\.txt|shop\.example|mailer\.com|bad-|example\.comx|under_score)}
redirector_pattern m'^https?://redir\.test/go\?to=(.*)$'i
header   T_ALL_TRUSTED eval:check_all_trusted()
full     T_ARC        eval:check_arc_signed()
full     T_ARC_DOM    eval:check_arc_signed('other.test')
header   T_EXT_HDRS   ALL-EXTERNAL =~ /^X-Inner-Mark:/m
header   T_TRU_HDRS   ALL-TRUSTED =~ /^X-Outer-Mark:/m
header   T_UNTRU_HDRS ALL-UNTRUSTED =~ /^X-Inner-Mark:/m
header   T_INT_HDRS   ALL-INTERNAL =~ /^X-Inner-Mark:/m
header   T_RDNS_EMPTY X-Spam-Relays-Untrusted =~ /^\[ ip=198\.51\.100\.7 rdns= helo=/
header   T_QMAIL_RDNS X-Spam-Relays-Untrusted =~ /^\[ ip=192\.0\.2\.3 rdns=mail\.example\.net helo=mail\.example\.net /
header   T_RELAY_INT  X-Spam-Relays-Internal =~ /ip=203\.0\.113\.5 .* intl=1 /
header   T_RELAY_EXT  X-Spam-Relays-External =~ /^\[ ip=198\.51\.100\.7 /
header   T_MSA        X-Spam-Relays-Trusted =~ /ip=203\.0\.113\.9 .* msa=1 /
header   T_AUTH_HTTP  X-Spam-Relays-Trusted =~ /^\[ ip=198\.51\.100\.7 .* auth=HTTP msa=0 \]/
header   T_UNPARSE    eval:check_relays_unparseable()
header   T_RDNS_CASE  X-Spam-Relays-Untrusted =~ /^\[ ip=\S+ rdns=Host-7\.Example\.NET helo=Mail\.Example\.NET /
header   T_EXIM_IDENT X-Spam-Relays-Untrusted =~ / helo=Client\.Example by=\S+ ident=joe envfrom=alice\@example\.test /
header   T_SM_IDENT   X-Spam-Relays-Untrusted =~ / rdns=client\.example helo=client\.example by=\S+ ident=joe envfrom=alice/
header   T_AUTH_PF    X-Spam-Relays-Trusted =~ / id= auth=Postfix /
header   T_AUTH_SM    X-Spam-Relays-Trusted =~ / id=h2F0c2x31856 auth=Sendmail /
header   T_RELAY_ID   X-Spam-Relays-Untrusted =~ / id=(?:x1y2z3\@host\.test|abc) auth= /
header   T_DATE_TAB   Date:raw =~ /^\t/
header   T_NOSPACE    ALL:raw =~ /^Subject:\S/m
body     T_ZERO_BODY  /zero-marker/
score    T_ZERO_BODY  0
meta     T_ZERO_META  T_ZERO_BODY
meta     T_ZERO_NOT   !T_ZERO_BODY
header   __ZERO_SUB   Subject =~ /zero-marker/
score    __ZERO_SUB   0
meta     T_ZERO_SUBM  __ZERO_SUB
header   T_ZERO_EVAL  eval:check_for_missing_to_header()
score    T_ZERO_EVAL  0
meta     T_ZERO_EVALM T_ZERO_EVAL
body     T_NONZERO    /zero-marker/
meta     T_ZERO_OFFM  T_NONZERO
score    T_ZERO_OFFM  0
meta     T_ZERO_OFFM2 T_ZERO_OFFM
header   T_ZERO_SET0  Subject =~ /zero-marker/
score    T_ZERO_SET0  0 1 0 1
meta     T_ZERO_SETM  T_ZERO_SET0
header   __NEVER_HIT  X-Never-There =~ /never/
meta     T_ZERO_NETNOT !__NEVER_HIT
score    T_ZERO_NETNOT 0 1 0 1
meta     T_ZERO_NETNOTM T_ZERO_NETNOT
body     __UNUSED_BODY /zero-marker/
meta     __UNUSED_META __UNUSED_BODY
body     __USED_BODY  /zero-marker/
meta     __USED_MID   __USED_BODY && !__ZERO_SUB
meta     T_USED_TOP   __USED_MID
if can(Mail::SpamAssassin::Plugin::Missing::has_x)
header   T_CAN_MISSING Subject =~ /./
endif
if can(Mail::SpamAssassin::Plugin::Loaded::has_x)
header   T_CAN_LOADED Subject =~ /./
endif
'''

# A group too large for PCRE2 once repeated 20 times (its compiled
# patterns stop at 64 KiB), as the stock __FILL_THIS_FORM_LONG* are: Perl
# takes it, Sift rewrites the repetition as subroutine calls (the
# look-behind keeps Hyperscan from matching it alone instead).
WORDS = ['w%04d' % i for i in range(700)]
RULES += 'body     T_BIG_REPEAT /(?:(?<!q)(?:%s)\\s){20}/\n' % '|'.join(WORDS)


# Look-alike letters as 25_replace.cf writes them (a group of some 800
# octets each: the letter, its look-alikes in UTF-8, a character
# reference), used so often that PCRE2 cannot hold the regex as written, as
# the stock __MY_MALWARE and __PAY_ME: Sift calls each group from a DEFINE.
# Their prefilter for lines of ASCII text leaves the look-alikes out; the
# whole one is scanned where a line has other octets or a '&'.
def look_alike(letter, extra):
    alts = ['[%s%s]' % (letter, letter.upper())] + extra
    alts += ['[\\xf0][\\x9d][\\x%02x][\\x%02x\\x%02x]' % (0x90 + k % 16, 0x80 + k, 0xa0 + k) for k in range(30)]
    return '(?:%s)' % '|'.join(alts)


RULES += 'replace_tag LA %s\n' % look_alike('a', ['[\\xd0][\\xb0]', '&\\#(?:97|1072);'])
RULES += 'replace_tag LB %s\n' % look_alike('b', [])
RULES += 'replace_tag LC %s\n' % look_alike('c', ['[\\xd1][\\x81]'])
RULES += 'replace_tag LD %s\n' % look_alike('d', [])
RULES += 'replace_tag LE %s\n' % look_alike('e', ['[\\xd0][\\xb5]'])
LOOK_WORDS = ['bead cab', 'dead bee', 'cede bad', 'aced dab', 'bade cad', 'deed ace', 'abed dace', 'cab bead',
              'bad deed', 'ebb dace', 'dab cede', 'ace bead', 'cad deed', 'bee dab', 'dace abed', 'bade ebb']
RULES += 'body     T_CALLS /(?:^|\\s)(?:%s)[\\s.,]/\nreplace_rules T_CALLS\n' % '|'.join(
    '\\s'.join(''.join('<L%s>' % c.upper() for c in w) for w in words.split()) for words in LOOK_WORDS)
RULES += ('body     T_LA_COUNT /<LA>/\ntflags   T_LA_COUNT multiple maxhits=50\nreplace_rules T_LA_COUNT\n'
          'meta     T_LA_3 (T_LA_COUNT == 3)\n')
RULES += 'body     T_LA_WORD /\\b<LB><LE><LA><LD>\\b/\nreplace_rules T_LA_WORD\n'
# A rule with a code point above 255 compiles in UTF mode, where the KELVIN
# SIGN (U+212A, three octets above 0x7f) matches "k" caseless: the ASCII form
# of its prefilter would drop that alternative and miss "kelvin" on an ASCII
# line, so UTF-mode rules get no ASCII form (hs_ascii_form) and Hyperscan
# finds what PCRE2 alone finds.
RULES += 'body     T_KELVIN_UTF /\\x{263A}|\u212aelvin/i\n'
# encoded words are left as written in Message-ID, References, In-Reply-To,
# List-* (SpamAssassin's _decode_header; checked with spamassassin -t)
RULES += r'''
header   T_MSGID_RAW  Message-ID =~ /=\?utf-8\?q\?/i
header   T_MSGID_DEC  Message-ID =~ /a\xc3\xa9@/
header   T_REFS_RAW   References =~ /=\?utf-8\?q\?r\?=/i
header   T_IRT_RAW    In-Reply-To =~ /=\?/
header   T_LIST_RAW   List-Id =~ /^=\?utf-8/i
header   T_SUBJ_DEC   Subject =~ /caf\xc3\xa9/
'''
# Shapes Hyperscan scans slowly, checked in C before PCRE2 (native.c): a
# run of long words, as the stock __LONGWORDS_*, and a long run of a class
# (__HEXHASHWORD_S2EU).
RULES += 'body     T_LONGWORDS /\\b(?:[a-z]{6,}[\\s\\.]+){4}/\n'
RULES += 'body     T_HEXRUN /\\s(?:(?!--)[-0-9a-f]){12,64}\\s/\n'
# A multiple rule counted in C (the stock __E_LIKE_LETTER): e or a
# look-alike of it in UTF-8, counted exactly as PCRE2 counts.
RULES += ('body     T_E_COUNT /(?:e|\\xc3[\\xa8-\\xab])/\ntflags   T_E_COUNT multiple maxhits=5\n'
          'meta     T_E_3 (T_E_COUNT == 3)\nmeta     T_E_5 (T_E_COUNT == 5)\n')
# A long run of any class over the whole message (the stock __LONGLINE).
RULES += 'full     T_LONGLINE /^[^\\r\\n]{998}/m\n'
# A word of look-alikes, each letter once or twice with a non-word octet
# or none between, as 25_replace.cf's FUZZY_* rules (<inter W1><post P2>).
RULES += ('body     T_LA_FUZZY /(?!decade)%s/i\nreplace_rules T_LA_FUZZY\n' %
          '\\W?'.join('<L%s>{1,2}' % c for c in 'DECADE'))

NETS = '''
trusted_networks 203.0.113.0/24 !198.51.100.0/24
internal_networks 203.0.113.5
msa_networks 203.0.113.9
'''

HDR = 'From: Alice <alice@example.test>\nTo: bob@sift.test\nSubject: lunch\nMessage-ID: <m1@example.test>\n'
DATE = 'Date: Mon, 1 Jan 2024 10:00:00 +0000\n'


def mp(parts, kind='alternative'):
    out = HDR + DATE + 'MIME-Version: 1.0\nContent-Type: multipart/%s; boundary="b1"\n\n' % kind
    for ctype, body, extra in parts:
        out += '--b1\nContent-Type: %s\n%s\n%s\n' % (ctype, extra, body)
    return out + '--b1--\n'


TEXT = 'Lunch tomorrow at noon in the usual place, bring the report please.'
HTML = '<html><body><p>%s</p></body></html>' % TEXT
OTHER = '<html><body><p>Completely different wording offering cheap pills online today only</p></body></html>'
B64LONG = 'QUFB' * 20  # 80 characters on one line
RCVD_EXT = ('Received: from mx.outer.test (mx.outer.test [203.0.113.5]) by inner.sift.test (Postfix) with ESMTP id A1;'
            ' Mon, 1 Jan 2024 10:00:02 +0000\n'
            'X-Inner-Mark: yes\n'
            'Received: from client.example (client.example [198.51.100.7]) by mx.outer.test (Postfix) with ESMTP id'
            ' B2; Mon, 1 Jan 2024 10:00:01 +0000\n')
POSTFIX_DOTCOM = ('Received: from hotmail.com (unknown [192.0.2.121]) by mx.example.net (Postfix) with ESMTP id'
                  ' X1; 28 Aug 2002 10:50:13 -0000\n')
# Images as ImageInfo reads their size: GIF 600x400, PNG 500x400 (IHDR),
# JPEG 400x300 (an APP0 segment, then SOF0), GIF 10x10.
GIF_BIG = b'GIF89a' + struct.pack('<HH', 600, 400) + b'\x00\x00\x00;'
PNG_BIG = (b'\x89PNG\r\n\x1a\n' + struct.pack('>I', 13) + b'IHDR' + struct.pack('>II', 500, 400) +
           b'\x08\x02\x00\x00\x00CRC!' + struct.pack('>I', 0) + b'IEND')
JPEG = (b'\xff\xd8\xff\xe0' + struct.pack('>H', 16) + b'JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00' +
        b'\xff\xc0' + struct.pack('>H', 17) + b'\x08' + struct.pack('>HH', 300, 400) + b'\x03' + b'\x00' * 9 +
        b'\xff\xd9')
GIF_SMALL = b'GIF89a' + struct.pack('<HH', 10, 10) + b'\x00\x00\x00;'


def subj(subject):
    return HDR.replace('Subject: lunch', 'Subject: ' + subject) + DATE + '\nhi\n'


def dated(date, extra=''):
    return ('Received: from a.test (a.test [192.0.2.1]) by mx.sift.test (Postfix) with ESMTP id X1;'
            ' Sat, 6 Jan 2024 10:00:00 +0000\n' + HDR + extra + 'Date: %s\n\nhi\n' % date)


def fm_msg(frm, reply_to, body):
    h = HDR.replace('alice@example.test', frm)
    if reply_to:
        h += 'Reply-To: %s\n' % reply_to
    return h + DATE + '\n' + body + '\n'


def html_msg(body):
    return HDR + DATE + 'Content-Type: text/html\n\n<html><body>%s</body></html>\n' % body


def img(kind, data, cte='base64'):
    body = base64.b64encode(data).decode() if cte == 'base64' else data.decode('latin-1')
    return ('image/' + kind, body, 'Content-Transfer-Encoding: %s\n' % cte)


# SpamAssassin runs no rule whose score is 0 in the score set in use: it
# does not hit, and metas read it as false (set 0 here; set 1 with
# spam_dns_available, where T_ZERO_SET0 runs).
ZERO_MSG = ('From: Alice <alice@example.test>\nSubject: zero-marker\nMessage-ID: <m1@example.test>\n' + DATE +
            '\nzero-marker\n')
ZERO_CASES = [
    ('zero', ZERO_MSG, None, ['T_NONZERO', 'T_ZERO_NOT', 'T_USED_TOP'],
     ['T_ZERO_BODY', 'T_ZERO_META', 'T_ZERO_SUBM', 'T_ZERO_EVAL', 'T_ZERO_EVALM', 'T_ZERO_OFFM', 'T_ZERO_OFFM2',
      'T_ZERO_SET0', 'T_ZERO_SETM', 'T_ZERO_NETNOT', 'T_ZERO_NETNOTM']),
]
ZERO_NET_CASES = [
    ('zero-net', ZERO_MSG, None, ['T_NONZERO', 'T_ZERO_NOT', 'T_ZERO_SET0', 'T_ZERO_SETM', 'T_ZERO_NETNOT',
                                  'T_ZERO_NETNOTM'],
     ['T_ZERO_META', 'T_ZERO_SUBM', 'T_ZERO_EVALM', 'T_ZERO_OFFM2']),
]

CASES = [
    ('img-gif', mp([('text/plain', 'See the picture.', ''), img('gif', GIF_BIG)], 'mixed'), None,
     ['T_IMG_TEXT', 'T_IMG_RAW', 'T_GIF_AREA', 'T_ALL_AREA'], ['T_PNG_AREA', 'T_JPEG_AREA']),
    ('img-png', mp([('text/plain', 'See the picture.', ''), img('png', PNG_BIG)], 'mixed'), None,
     ['T_PNG_AREA', 'T_ALL_AREA', 'T_IMG_TEXT'], ['T_GIF_AREA', 'T_JPEG_AREA']),
    ('img-jpeg', mp([('text/plain', 'See the picture.', ''), img('jpg', JPEG)], 'mixed'), None,
     ['T_ALL_AREA', 'T_IMG_TEXT'], ['T_JPEG_AREA', 'T_GIF_AREA']),
    ('img-two', mp([('text/plain', 'See the pictures.', ''), img('gif', GIF_BIG), img('jpeg', JPEG)], 'mixed'),
     None, ['T_GIF_AREA', 'T_IMG_TEXT'], ['T_ALL_AREA', 'T_JPEG_AREA']),
    ('img-small', mp([('text/plain', 'See the picture.', ''), img('gif', GIF_SMALL)], 'mixed'), None, [],
     ['T_IMG_TEXT', 'T_IMG_RAW', 'T_GIF_AREA', 'T_ALL_AREA']),
    ('img-not-base64', mp([('text/plain', 'See the picture.', ''), img('gif', GIF_BIG, '8bit')], 'mixed'),
     None, [], ['T_GIF_AREA', 'T_ALL_AREA', 'T_IMG_TEXT']),
    ('img-long-text', mp([('text/plain', 'A long letter about the picture. ' * 200, ''), img('gif', GIF_BIG)],
                         'mixed'), None, ['T_GIF_AREA'], ['T_IMG_TEXT', 'T_IMG_RAW']),
    # name, message, envelope from, rules that must hit, rules that must not
    ('madiff', mp([('text/plain', TEXT, ''), ('text/html', OTHER, '')]), None,
     ['T_MADIFF'], ['T_MADIFF_CNT']),
    ('madiff-count', mp([('text/plain', TEXT, ''), ('text/html', '<p>hi there</p>', '')]), None,
     ['T_MADIFF_CNT'], []),
    ('madiff-same', mp([('text/plain', TEXT, ''), ('text/html', HTML, '')]), None,
     [], ['T_MADIFF', 'T_MADIFF_CNT', 'T_MP_RATIO']),
    # an HTML part of images alone counts as one word the text lacks
    ('madiff-image', mp([('text/plain', TEXT, ''),
                         ('text/html', '<html><body><img src="cid:a" width="9" height="9"></body></html>', '')]),
     None, ['T_MADIFF'], ['T_MADIFF_CNT']),
    ('mp-ratio', mp([('text/plain', 'hi', ''), ('text/html', HTML * 10, '')]), None, ['T_MP_RATIO'], []),
    ('blank', HDR + DATE + '\n' + 'a\n\n\n\n\n\nb\n\n\n\n', None, ['T_BLANK'], ['T_VERTICAL', 'T_UPPER']),
    ('vertical', HDR + DATE + '\nl o o k   a t   t h i s\n', None, ['T_VERTICAL'], ['T_BLANK']),
    ('upper', HDR + DATE + '\n' + 'BUY THE BEST PILLS AT THE LOWEST PRICES TODAY ' * 6 + '\n', None,
     ['T_UPPER'], []),
    ('lower', HDR + DATE + '\n' + 'buy the best pills at the lowest prices today ' * 6 + '\n', None, [],
     ['T_UPPER']),
    # digits count with the lower case letters: 2 capitals in 10, 20%
    ('upper-digits', HDR + DATE + '\n' + 'AB 12345678 ' * 20 + '\n', None, [], ['T_UPPER']),
    ('no-words-in-ids', 'From: Alice <alice@example.test>\nTo: bob@sift.test\nSubject: =?utf-8?q?caf=C3=A9?=\n'
     'Message-ID: <=?utf-8?q?a=C3=A9?=@example.test>\nReferences: <=?utf-8?q?r?=@example.test>\n'
     'In-Reply-To: <=?utf-8?q?r?=@example.test>\nList-Id: =?utf-8?q?caf=C3=A9?= <l.example.test>\n' + DATE +
     '\nbody\n', None, ['T_MSGID_RAW', 'T_REFS_RAW', 'T_IRT_RAW', 'T_LIST_RAW', 'T_SUBJ_DEC'], ['T_MSGID_DEC']),
    ('ascii-illegal', (HDR + DATE + 'Content-Type: text/plain\n\ncaf\xe9 au lait\n').encode('latin-1'), None,
     ['T_ASCII_ILL'], []),
    ('ascii-legal', HDR + DATE + 'Content-Type: text/plain; charset=iso-8859-1\n\ncafe au lait\n', None, [],
     ['T_ASCII_ILL', 'T_UNICODE']),
    # CRLF line ends (a milter's message) count as LF ones (what SpamAssassin
    # sees): the CR of CRLF is neither illegal nor part of a line's length.
    ('ascii-crlf', (HDR + DATE + 'Content-Type: text/plain; charset=us-ascii\n\ncafe\nau lait\n')
     .replace('\n', '\r\n'), None, [], ['T_ASCII_ILL']),
    ('ascii-bare-cr', (HDR + DATE + 'Content-Type: text/plain; charset=us-ascii\n\ncafe\rau lait\n')
     .replace('\n', '\r\n'), None, ['T_ASCII_ILL'], []),
    ('b64-crlf', mp([('text/plain', TEXT, ''), ('application/octet-stream', 'QUFB' * 19 + 'Q\nQUFB',
                                                 'Content-Transfer-Encoding: base64\n')], 'mixed')
     .replace('\n', '\r\n'), None, [], ['T_B64_LEN']),
    ('unicode', HDR + DATE + 'Content-Type: text/plain\n\n' + '&#x0041;&#x0042;' * 10 + ' text\n', None,
     ['T_UNICODE'], []),
    ('b64-long', mp([('text/plain', TEXT, ''), ('application/octet-stream', B64LONG,
                                                 'Content-Transfer-Encoding: base64\n')], 'mixed'), None,
     ['T_B64_LEN'], ['T_MA_NONTEXT']),
    ('ma-nontext', mp([('text/plain', TEXT, ''), ('application/octet-stream', 'QUFB',
                                                   'Content-Transfer-Encoding: base64\n')]), None,
     ['T_MA_NONTEXT'], ['T_B64_LEN']),
    ('stock', HDR + DATE + '\nSymbol: ABCD\nTarget Price: $5\nSector: energy\nRating: buy\n', None,
     ['T_STOCK'], []),
    ('no-stock', HDR + DATE + '\nSymbol: ABCD\nAgenda: lunch\n', None, [], ['T_STOCK']),
    ('aol', 'Received: from rly-xa01.mx.aol.com (rly-xa01.mx.aol.com [192.0.2.1]) by mx.sift.test with SMTP;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_AOL'], ['T_HOTMAIL']),
    ('hotmail', 'Received: from hotmail.com (unknown [192.0.2.1]) by mx.sift.test with SMTP;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_HOTMAIL'], ['T_AOL', 'T_NOHOTMAIL']),
    ('no-hotmail', 'Received: from mail.example (mail.example [192.0.2.1]) by mx.sift.test with SMTP;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR.replace('alice@example.test', 'alice@hotmail.com') + DATE +
     '\nhi\n', None, ['T_NOHOTMAIL'], ['T_HOTMAIL']),
    ('gmail-forged', HDR.replace('alice@example.test', 'alice@gmail.com') + DATE + '\nhi\n', None,
     ['T_GMAIL'], []),
    ('gmail-real', HDR.replace('alice@example.test', 'alice@gmail.com') + DATE +
     'X-Received: by 10.1.2.3 with SMTP id abc; Mon, 1 Jan 2024 10:00:00 +0000\n\nhi\n', None, [], ['T_GMAIL']),
    ('trail', ''.join('Received: from a%d.host%d.test (a%d.host%d.test [192.0.2.%d]) by b%d.other%d.test'
                      ' (Postfix) with ESMTP id X%d; Mon, 1 Jan 2024 10:00:0%d +0000\n' % (i, i, i, i, i, i, i, i, i)
                      for i in range(1, 5)) + HDR + DATE + '\nhi\n', None, ['T_TRAIL'], []),
    ('no-trail', 'Received: from a1.host1.test (a1.host1.test [192.0.2.1]) by mx.sift.test (Postfix) with ESMTP'
     ' id X1; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, [], ['T_TRAIL']),
    ('ratware', HDR + DATE + '\nhi\n', 'sift.test.bob@spam.example', ['T_RATWARE_EF'], ['T_ENV_FROM']),
    ('env-from', HDR + DATE + '\nhi\n', 'alice@example.test', ['T_ENV_FROM'], ['T_RATWARE_EF']),
    ('rp-rcvd', 'Received: from out.example.test (out.example.test [192.0.2.1]) by mx.sift.test (Postfix) with'
     ' ESMTP id X1; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', 'alice@example.test',
     ['T_RP_RCVD'], []),
    ('rp-other', 'Received: from out.other.test (out.other.test [192.0.2.1]) by mx.sift.test (Postfix) with'
     ' ESMTP id X1; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', 'alice@example.test',
     [], ['T_RP_RCVD']),
    ('to-subj', HDR.replace('Subject: lunch', 'Subject: bob, a gift for you') + DATE + '\nhi\n', None,
     ['T_TO_SUBJ'], []),
    ('template', HDR + DATE + 'X-Campaign: %CAMPAIGN_ID\n\nhi\n', None, ['T_TEMPLATE'], ['T_TO_SUBJ']),
    ('title', HDR + DATE + 'Content-Type: text/html\n\n<html><head><title>A very long title that goes on and on'
     '</title></head><body>x</body></html>\n', None, ['T_TITLE'], ['T_TEMPLATE']),
    ('no-title', HDR + DATE + 'Content-Type: text/html\n\n<html><head><title>lunch</title></head><body>x'
     '</body></html>\n', None, [], ['T_TITLE']),
    # anchors: an http(s) link whose text shows an https URI elsewhere
    ('https-ip', html_msg('<a href="http://192.0.2.7/login">https://www.bank.com/</a>'), None,
     ['T_HTTPS_IP'], ['T_HTTPS_HTTP', 'T_IFRAME']),
    ('https-ip-userinfo', html_msg('<a href="https://x@192.0.2.7/">Sign in at HTTPS://www.bank.com</a>'), None,
     ['T_HTTPS_IP'], ['T_HTTPS_HTTP']),
    ('https-ip-same', html_msg('<a href="http://192.0.2.7/">https://192.0.2.7/</a>'), None, [],
     ['T_HTTPS_IP', 'T_HTTPS_HTTP']),
    ('https-http', html_msg('<a href=" http://login.evil.com/x ">Go to https&#58;//www.bank.com/ now</a>'), None,
     ['T_HTTPS_HTTP'], ['T_HTTPS_IP']),
    ('https-http-img', html_msg('<a href="http://evil.com/"><img src="x.gif"> https://www.bank.com</a>'), None,
     ['T_HTTPS_HTTP'], []),
    ('https-http-same', html_msg('<a href="http://login.bank.co.uk/">https://www.bank.co.uk/</a>'
                                 '<a href="http://www.bank.com/">http://www.evil.com/</a>'), None,
     [], ['T_HTTPS_HTTP', 'T_HTTPS_IP']),
    ('https-http-invalid-tld', html_msg('<a href="http://evil.invalid/">https://www.bank.com/</a>'), None,
     [], ['T_HTTPS_HTTP']),
    ('https-http-outside', html_msg('<a href="http://evil.com/">bank</a> https://www.bank.com/'), None,
     [], ['T_HTTPS_HTTP']),
    ('https-http-ten', html_msg('<a href="http://evil.com/">https://www.bank.com/</a>' +
                                ''.join('<a href="http://s%d.test/">x</a>' % i for i in range(9))), None,
     [], ['T_HTTPS_HTTP']),
    ('https-http-nine', html_msg('<a href="http://evil.com/">https://www.bank.com/</a>' +
                                 ''.join('<a href="http://s%d.test/">x</a>' % i for i in range(8))), None,
     ['T_HTTPS_HTTP'], []),
    ('iframe', html_msg('<iframe src="http://ads.test/frame"></iframe>'), None, ['T_IFRAME'], []),
    ('iframe-empty', html_msg('<iframe src=" "></iframe><img src="http://ads.test/x.gif">'), None, [],
     ['T_IFRAME']),
    # a body with nothing but the subject: nosubject, mime_attachment
    ('empty', HDR + DATE + '\n\n', None, ['T_EMPTY'], ['T_NONEMPTY', 'T_ATTACH']),
    ('not-empty', HDR + DATE + '\n\nhi\n', None, ['T_NONEMPTY'], ['T_EMPTY']),
    # HTMLEval as SpamAssassin's: a closing tag alone makes the tag exist;
    # a closing tag with none open is in excess (the count of open tags
    # stays at 0, not -1), so </b><b>x</b> leaves none open; each HTML part
    # tested, the first with no image nor title, the second with both
    ('html-tags', html_msg('</head></b><b>x</b>'), None, ['T_HT_EXISTS'], ['T_HT_BAL', 'T_HT_INVALID']),
    ('html-invalid', html_msg('<font color="nocolour">seen</font>'), None, ['T_HT_INVALID'],
     ['T_HT_FACE', 'T_HT_EMBEDS']),
    # a face with a line break in it is not a list of font names
    ('html-face', html_msg('<font face="Arial MT\nBlack">seen</font><embed src="x.swf">'), None,
     ['T_HT_FACE', 'T_HT_EMBEDS'], ['T_PF_EPI']),
    # obfuscation_ratio: text glued to text across <b>, 2 of 6 tags; with
    # none glued (block tags between) the statistic does not exist, and no
    # html_range nor html_eval over it holds
    ('html-obfuscate', html_msg('v<b>i</b>agra'), None, ['T_HT_OBF', 'T_HT_OBF_ANY'], []),
    ('html-obfuscate-none', html_msg('<p>via</p><p>gra</p>'), None, [], ['T_HT_OBF', 'T_HT_OBF_ANY']),
    # html_image_only: an img tag seen, a closing one too (exists $inside{img})
    ('html-img-close', html_msg('look</img> here'), None, ['T_HT_IMGONLY'], []),
    ('html-img-none', html_msg('look here'), None, [], ['T_HT_IMGONLY']),
    ('parse-flags', mp([('text/plain', 'hello there', '')], 'mixed') + 'the epilogue\n', None, ['T_PF_EPI'],
     ['T_PF_NOH']),
    ('parse-flags-none', mp([('text/plain', 'hello there', '')], 'mixed'), None, [], ['T_PF_EPI', 'T_PF_NOH']),
    ('parse-flags-headers', mp([('text/plain', 'hello there', '')], 'mixed').replace(
        'Content-Type: text/plain\n', ''), None, ['T_PF_NOH'], ['T_PF_EPI']),
    ('html-open', html_msg('<b>x</b><b>y'), None, ['T_HT_BAL'], ['T_HT_EXISTS']),
    ('html-parts', mp([('text/html', HTML, ''),
                       ('text/html', '<html><head><title>the second part</title></head><body>'
                        '<img src="cid:1" width="600" height="400">a b c</body></html>', '')], 'mixed'), None,
     ['T_HT_RATIO', 'T_HT_TEXT'], []),
    # body text as SpamAssassin renders it: a run of white space one
    # space, a blank line a paragraph (a line of its own), a no-break
    # space one space with the white space after it; single spaces kept
    ('white-space', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\n'
     'one  two \t three.\n \nFour five\u00a0 six seven end\n', None, ['T_WS_RUN', 'T_WS_NBSP'], ['T_WS_TWO']),
    # a paragraph break is the span from the first newline of a run of
    # white space to its last: what is before and after it stays a space
    # (s/\n+\s*\n+/\0/ then s/\s+/ /), so a line can start with one
    ('white-space-paragraph', HDR + DATE + 'Content-Type: text/plain\n\n'
     'before  \n\n   tracker id\n \n after\n', None, ['T_WS_PRE', 'T_WS_LEAD', 'T_WS_POST'],
     ['T_WS_BARE', 'T_WS_TWO']),
    # mimeheader reads every part as SpamAssassin's find_parts lists them,
    # the message itself first, and in each the last instance of the
    # header, ending in a newline
    ('mimeheader-root', HDR + DATE + 'Content-Type: text/plain; charset=us-ascii\n\nhello there\n', None,
     ['T_MH_ROOT', 'T_MH_NL'], ['T_MH_MULTI']),
    ('mimeheader-last', mp([('text/plain', 'hello there', ''),
                            ('application/octet-stream', 'QUFB', 'Content-Disposition: attachment; filename="first.bin"\n'
                             'Content-Disposition: attachment; filename="last.bin"\n')], 'mixed'), None,
     ['T_MH_MULTI', 'T_MH_LAST'], ['T_MH_FIRST', 'T_MH_ROOT']),
    # a quoted-printable line over 78 characters, not one starting "SPAM: ";
    # a CR counts, but not the line ends of a CRLF message
    ('qp-line-78', mp([('text/plain', 'a' * 77 + '=\nb', 'Content-Transfer-Encoding: quoted-printable\n')],
                      'mixed'), None, [], ['T_QP_LONG']),
    ('qp-line-79', mp([('text/plain', 'a' * 78 + '=\nb', 'Content-Transfer-Encoding: quoted-printable\n')],
                      'mixed'), None, ['T_QP_LONG'], []),
    ('qp-line-spam', mp([('text/plain', 'SPAM: ' + 'a' * 90 + '\nb', 'Content-Transfer-Encoding: quoted-printable\n')],
                        'mixed'), None, [], ['T_QP_LONG']),
    ('qp-line-cr', mp([('text/plain', 'a' * 77 + '\r=\nb', 'Content-Transfer-Encoding: quoted-printable\n')],
                      'mixed'), None, ['T_QP_LONG'], []),
    ('qp-line-crlf', mp([('text/plain', 'a' * 77 + '=\nb', 'Content-Transfer-Encoding: quoted-printable\n')],
                        'mixed').replace('\n', '\r\n'), None, [], ['T_QP_LONG']),
    ('qp-line-last', mp([('text/plain', 'b\n' + 'a' * 90, 'Content-Transfer-Encoding: quoted-printable\n')],
                        'mixed'), None, ['T_QP_LONG'], []),
    ('empty-attachment', mp([('application/pdf', 'JVBERi0=', 'Content-Transfer-Encoding: base64\n'
                              'Content-Disposition: Attachment; filename="a.pdf"\n')], 'mixed'), None,
     ['T_ATTACH'], ['T_EMPTY', 'T_NONEMPTY']),
    ('html-and-calendar', mp([('text/html', HTML, ''), ('text/calendar', 'BEGIN:VCALENDAR', '')], 'mixed'), None,
     [], ['T_HTML_ONLY']),
    # text/calendar and text/x-vcard are not body text (SpamAssassin renders
    # text/plain and text/html, every other text/ type as text/plain);
    # x-vcard is rawbody text, calendar is not
    ('calendar-vcard', mp([('text/plain', 'hi', ''), ('text/calendar', 'CALMARK http://cal-uri.test/', ''),
                           ('text/x-vcard', 'VCARDMARK', ''), ('text/enriched', 'ENRICHMARK', '')], 'mixed'),
     None, ['T_VCARD_RAW', 'T_ENR_BODY'], ['T_CAL_BODY', 'T_CAL_RAW', 'T_CAL_URI', 'T_VCARD_BODY', 'T_HTML_ONLY']),
    ('html-and-image', mp([('text/html', HTML, ''), img('gif', GIF_SMALL)], 'mixed'), None, ['T_HTML_ONLY'], []),
    # Date against Received as HeaderEval reads both (Util::parse_rfc822_date)
    ('date-past', dated('Mon, 1 Jan 2024 10:00:00 +0000'), None, ['T_PAST_96'], ['T_PAST_12_24']),
    ('date-recent', dated('Sat, 6 Jan 2024 09:30:00 +0000'), None, [], ['T_PAST_96', 'T_PAST_12_24']),
    ('date-zone', dated('Fri, 5 Jan 2024 13:00:00 EST'), None, ['T_PAST_12_24'], ['T_PAST_96']),
    ('date-zone-numeric', dated('5 Jan 2024 20:00:00 -0500 (EST)'), None, [], ['T_PAST_12_24', 'T_PAST_96']),
    # asctime: SpamAssassin's parser removes the time with the date (00:00:00)
    ('date-asctime', dated('Fri Jan  5 20:00:00 2024'), None, ['T_PAST_24_48'], ['T_PAST_12_24', 'T_PAST_96']),
    ('date-2digit-year', dated('Mon, 01 Jan 24 10:00:00 GMT'), None, ['T_PAST_96'], []),
    ('date-resent', dated('Mon, 1 Jan 2024 10:00:00 +0000', 'Resent-Date: Sat, 6 Jan 2024 09:00:00 +0000\n'),
     None, [], ['T_PAST_96']),
    ('date-unparsable-first', dated('garbage', 'Date: Mon, 1 Jan 2024 10:00:00 +0000\n'), None, ['T_PAST_96'], []),
    ('date-fetchmail', 'Received: from localhost (localhost [127.0.0.1]) by box.test (Postfix) with ESMTP id L1;'
     ' Tue, 9 Jan 2024 10:00:00 +0000\n'
     'Received: from pop.test by localhost with POP3 (fetchmail-6.4.37) for <bob@sift.test>;'
     ' Tue, 9 Jan 2024 10:00:00 +0000\n'
     'Received: from a.test (a.test [192.0.2.1]) by mx.sift.test (Postfix) with ESMTP id X1;'
     ' Sat, 6 Jan 2024 10:00:00 +0000\n' + HDR + 'Date: Sat, 6 Jan 2024 09:00:00 +0000\n\nhi\n', None,
     [], ['T_PAST_96']),
    # X-Originating-IP is the last untrusted relay, as in SpamAssassin: the
    # no-rDNS dotcom HELO of the qmail hop before it no longer decides
    ('dotcom-helo', POSTFIX_DOTCOM + HDR + DATE + '\nhi\n', None, ['T_DOTCOM'], ['T_ORIG_RELAY']),
    ('dotcom-helo-orig', POSTFIX_DOTCOM + HDR + 'X-Originating-IP: [198.51.100.9]\n' + DATE + '\nhi\n', None,
     ['T_ORIG_RELAY'], ['T_DOTCOM']),
    # formats whose MTA did not look the rDNS up: no "no rDNS" verdict
    ('dotcom-helo-qmail-unknown', 'Received: from unknown (HELO hotmail.com) (192.0.2.121) by mta1.example.net'
     ' with SMTP; 28 Aug 2002 10:50:13 -0000\n' + HDR + DATE + '\nhi\n', None, [], ['T_DOTCOM']),
    ('dotcom-helo-smtpsvc', 'Received: from mx1.mail.yahoo.com ([192.0.2.121]) by mail.example.net with Microsoft'
     ' SMTPSVC(5.0.2195.2966); Wed, 28 Aug 2002 12:43:57 +0500\n' + HDR + DATE + '\nhi\n', None, [], ['T_DOTCOM']),
    ('dotcom-helo-domino', 'Received: from mx1.mail.yahoo.com ([192.0.2.121]) by mail.example.net (Lotus Domino'
     ' Release 5.0.4) with ESMTP id 2001; Tue, 2 Jan 2001 15:58:46 +0530\n' + HDR + DATE + '\nhi\n', None, [],
     ['T_DOTCOM']),
    # qmail without HELO: the rDNS is the name it gives
    ('qmail-bracket-rdns', 'Received: from rly-xw01.mx.aol.com ([192.0.2.114]) by mx.example.net with SMTP;'
     ' Sep, 12 2002 12:53:53 AM +0400\n' + HDR + DATE + '\nhi\n', None, [], ['T_DOTCOM']),
    # EnvelopeFrom from Return-Path, unless a Return-Path follows a Received:
    ('envfrom-return-path', 'Return-Path: <x@other.test>\n' + RCVD_EXT + HDR + DATE + '\nhi\n', None,
     ['T_FROM_DIFF'], []),
    ('envfrom-return-path-late', 'Return-Path: <x@other.test>\n' + RCVD_EXT + 'Return-Path: <y@list.test>\n' + HDR +
     DATE + '\nhi\n', None, [], ['T_FROM_DIFF']),
    # the header it comes from: its first address; a header without one is
    # passed over, and so is an Envelope-Sender after a Received:
    ('envfrom-no-address', 'Return-Path: yyyy\n' + HDR + DATE + '\nhi\n', None, [], ['T_ENVF_ANY']),
    ('envfrom-empty-path', 'Return-Path: <>\n' + HDR + DATE + '\nhi\n', None, [], ['T_ENVF_ANY']),
    ('envfrom-next-header', 'X-Envelope-From: junk\nReturn-Path: <rp@x.test> (bounce)\n' + HDR + DATE + '\nhi\n',
     None, ['T_ENVF_RP'], []),
    ('envfrom-sender-late', 'Return-Path: <rp@x.test>\n' + RCVD_EXT + 'Envelope-Sender: es@x.test\n' + HDR + DATE +
     '\nhi\n', None, ['T_ENVF_RP'], []),
    ('envfrom-xenv-late', 'Return-Path: <rp@x.test>\n' + RCVD_EXT + 'X-Envelope-From: xe@x.test\n' + HDR + DATE +
     '\nhi\n', None, [], ['T_ENVF_ANY']),
    # :addr and :name: every mailbox of every instance, one a line (the
    # names of those that have one); no mailbox is the header unset
    ('addr-all', HDR.replace('From: Alice <alice@example.test>', 'From: "Bob" <a@x.test>, c@y.test,\n Carol <d@z.test>\n'
                             'From: e@w.test (Eve)') + DATE + '\nhi\n', None, ['T_ADDRS', 'T_NAMES', 'T_ADDR_WS'], []),
    ('addr-one', HDR + DATE + '\nhi\n', None, ['T_ADDR_ANY'], ['T_ADDR_WS', 'T_ADDRS', 'T_NAMES']),
    ('addr-none', HDR.replace('From: Alice <alice@example.test>', 'From: undisclosed-recipients:;') + DATE + '\nhi\n',
     None, [], ['T_ADDR_ANY']),
    # check_body_length: the body as received, at most that many octets
    ('body-len-64', HDR + DATE + '\n' + 'a' * 63 + '\n', None, ['T_LEN_64'], []),
    ('body-len-65', HDR + DATE + '\n' + 'a' * 64 + '\n', None, [], ['T_LEN_64']),
    ('body-len-html', HDR + DATE + 'Content-Type: text/html\n\n<html><body><!-- ' + 'x' * 80 +
     ' -->hi</body></html>\n', None, [], ['T_LEN_64']),
    # check_uri_host_listed: the host or a parent domain in the list, the
    # first found deciding ("!ok.bad.test"); links, and domains the text
    # names; no mailto:, no name without a TLD (href="click"), no host delisted
    ('urilist-parent', html_msg('<a href="http://www.bad.test/x">x</a>'), None, ['T_URI_LISTED'], ['T_URI_BLOCK']),
    ('urilist-exception', html_msg('<a href="http://ok.bad.test/x">x</a>'), None, [], ['T_URI_LISTED']),
    ('urilist-tld-bare', HDR + DATE + '\nExtended Towing Benefits.Click Here\n', None, ['T_URI_LISTED'], []),
    ('urilist-not-host', html_msg('<a href="click">x</a> <a href="mailto:a@bad.test">m</a>'
                                  ' <a href="http://gone.test/">g</a>'), None, [], ['T_URI_LISTED']),
    ('urilist-block', html_msg('<a href="http://www.blocked.test/">x</a>'), None, ['T_URI_BLOCK'], ['T_URI_LISTED']),
    # subject_is_all_caps: letters only count, prefixes go, some charsets punt
    ('caps', subj('RE: FREE MONEY NOW!!!'), None, ['T_ALL_CAPS'], []),
    ('caps-8bit', subj('=?iso-8859-1?Q?GRATUIT_=C0_VOUS?='), None, ['T_ALL_CAPS'], []),
    ('caps-short', subj('BUY NOW'), None, [], ['T_ALL_CAPS']),
    ('caps-one-word', subj('Re: ANNOUNCEMENT'), None, [], ['T_ALL_CAPS']),
    ('caps-lower', subj('FREE MONEY now'), None, [], ['T_ALL_CAPS']),
    ('caps-koi8', subj('=?koi8-r?B?8NLJ18XUIM3J0iE=?= ABC DEF'), None, [], ['T_ALL_CAPS']),
    # the URIs uri rules see: SpamAssassin's canonical variants
    ('uri-decimal-ip', html_msg('<a href="http://3221225985/">x</a>'), None, ['T_URI_IP'], []),
    ('uri-hex-ip', html_msg('<a href="http://0xC0000201/">x</a>'), None, ['T_URI_IP'], []),
    ('uri-octal-ip', html_msg('<a href="http://0300.0.02.01/">x</a>'), None, ['T_URI_IP'], []),
    ('uri-escaped-ip', html_msg('<a href="http://%31%39%32.0.2.1/">x</a>'), None, ['T_URI_IP'], []),
    ('uri-other-ip', html_msg('<a href="http://192.0.2.10/">x</a>'), None, [], ['T_URI_IP']),
    ('uri-port', html_msg('<a href="http://a.test:80/x">x</a>'), None, ['T_URI_PORT'], []),
    ('uri-redirector', html_msg('<a href="http://redir.test/go?to=target.test/path">x</a>'), None,
     ['T_URI_TARGET'], []),
    ('uri-query-url', html_msg('<a href="http://click.test/c?u=http://target.test/path&id=1">x</a>'), None,
     ['T_URI_TARGET'], []),
    ('uri-word-host', html_msg('<a href="http://example/">x</a>'), None, ['T_URI_WWW'], []),
    ('uri-mailto-query', html_msg('<a href="mailto:bob@a.test?subject=hi">x</a>'), None, ['T_URI_MAILTO'], []),
    ('uri-plain', html_msg('<a href="http://b.test/">x</a>'), None, [],
     ['T_URI_IP', 'T_URI_PORT', 'T_URI_TARGET', 'T_URI_WWW', 'T_URI_MAILTO']),
    # domains named without a scheme, in the Subject and the body, as
    # SpamAssassin 4.0's text URI regex finds them (a valid TLD ending the
    # name, a delimiter before and after, is_fqdn_valid; checked with
    # spamassassin -t): not before a ',' or ')', nor inside an address; an
    # address with a '/' before its '@' is an http: URI
    ('bare-domains', HDR.replace('Subject: lunch', 'Subject: see deals.com now') + DATE +
     '\nplease visit cheap-pills.com/buy today, or foo.bar.com, not file.txt.\n'
     'Also (see shop.example.com) and joe@mailer.com.\n'
     'end at last-one.net. and UPPER.NET/Path and a.b.co.uk:8080/x)y\n'
     'no: bad-.com example.comx host.uk. under_score.com but a_b.x.com y.com/a@b.com\n', None,
     ['T_BARE_SUBJ', 'T_BARE_PATH', 'T_BARE_END', 'T_BARE_CASE', 'T_BARE_PORT', 'T_BARE_UK', 'T_BARE_THIRD',
      'T_BARE_ADDR'],
     ['T_BARE_NOT']),
    # To: present but empty is not missing
    ('to-empty', HDR.replace('To: bob@sift.test', 'To: ') + DATE + '\nhi\n', None, [], ['T_MISSING_TO']),
    ('to-missing', HDR.replace('To: bob@sift.test\n', '') + DATE + '\nhi\n', None, ['T_MISSING_TO'], []),
    ('to-apparently', HDR.replace('To: bob@sift.test\n', 'Apparently-To: bob@sift.test\n') + DATE + '\nhi\n',
     None, [], ['T_MISSING_TO']),
    # ReplaceTags: tags inside tags' values; a repeated group PCRE2 finds too large
    ('replace-nested', HDR + DATE + '\nFresh pasta today!\n', None, ['T_NESTED_TAG'], []),
    ('replace-nested-miss', HDR + DATE + '\nFresh bread today!\n', None, [], ['T_NESTED_TAG']),
    ('big-repeat', HDR + DATE + '\n' + ' '.join(WORDS[100:121]) + '\n', None, ['T_BIG_REPEAT'], []),
    ('big-repeat-short', HDR + DATE + '\n' + ' '.join(WORDS[100:115]) + ' stop\n', None, [], ['T_BIG_REPEAT']),
    # FreeMail: From and Reply-To, the addresses of the body
    ('fm-both', fm_msg('alice@gmail.com', 'bob@yahoo.com', 'hi'), None,
     ['T_FM_REPLYTO', 'T_FM_REPLY', 'T_FM_FROM'], []),
    ('fm-same', fm_msg('alice@gmail.com', 'alice@gmail.com', 'hi'), None, ['T_FM_FROM'],
     ['T_FM_REPLYTO', 'T_FM_REPLY']),
    ('fm-reply-body', fm_msg('alice@gmail.com', None, 'write to Carol@Yahoo.com today'), None,
     ['T_FM_REPLY'], ['T_FM_REPLYTO']),
    ('fm-replyto-body', fm_msg('x@corp.test', 'bob@gmail.com', 'or dave@yahoo.com'), None,
     ['T_FM_REPLYTO'], ['T_FM_REPLY', 'T_FM_FROM']),
    ('fm-replyto-nobody', fm_msg('x@corp.test', 'bob@gmail.com', 'hi'), None, [],
     ['T_FM_REPLYTO', 'T_FM_REPLY']),
    ('fm-body-label', fm_msg('alice@gmail.com', None, 'carol@yahoo.com  Sent: Monday'), None, [], ['T_FM_REPLY']),
    ('fm-body-fax', fm_msg('alice@gmail.com', None, 'carol@yahoo.com fax: 123'), None, ['T_FM_REPLY'], []),
    ('fm-body-bracket', fm_msg('alice@gmail.com', None, 'From: <carol@yahoo.com>'), None, [], ['T_FM_REPLY']),
    ('fm-body-url', fm_msg('alice@gmail.com', None, 'see http://x.test/?u=carol@yahoo.com'), None, [],
     ['T_FM_REPLY']),
    ('fm-body-tld', fm_msg('alice@gmail.com', None, 'carol@yahoo.comx or carol@yahoo.com.zz'), None, [],
     ['T_FM_REPLY']),
    ('fm-body-many', fm_msg('alice@gmail.com', None, 'carol@yahoo.com a@x.test b@x.test c@x.test d@x.test'), None,
     [], ['T_FM_REPLY']),
    ('fm-mailto', HDR.replace('alice@example.test', 'alice@gmail.com') + DATE +
     'Content-Type: text/html\n\n<a href="mailto:carol@yahoo.com">write</a>\n', None, ['T_FM_REPLY'], []),
    ('fm-welcome', fm_msg('support@gmail.com', 'info@yahoo.com', 'hi'), None, [],
     ['T_FM_FROM', 'T_FM_REPLYTO', 'T_FM_REPLY']),
    ('fm-from-envelope', 'Return-Path: <y@yahoo.com>\n' + fm_msg('x@corp.test', None, 'hi'), None, ['T_FM_FROM'], []),
    ('fm-glob', fm_msg('a@gmx.net', None, 'hi'), None, ['T_FM_FROM'], []),
    ('fm-glob-one-label', fm_msg('a@gmx.co.uk', None, 'hi'), None, [], ['T_FM_FROM']),
    ('fm-glob-any-char', fm_msg('a@mail2.test', None, 'hi'), None, ['T_FM_FROM'], []),
    # check_freemail_header: every address of the header (a list's second
    # one), the argument's :addr modifier, the regex over each
    ('fm-header-second', fm_msg('x@corp.test', '"peter"@corp.test, weou345@gmail.com', 'hi'), None,
     ['T_FM_RT_DIGIT', 'T_FM_RT_ADDR'], []),
    ('fm-header-two-fields', fm_msg('x@corp.test', 'a@corp.test', 'hi').replace(
        'Reply-To: a@corp.test\n', 'Reply-To: a@corp.test\nReply-To: bob7@gmail.com\n'), None,
     ['T_FM_RT_DIGIT', 'T_FM_RT_ADDR'], []),
    ('fm-header-no-digit', fm_msg('x@corp.test', 'bob7@corp.test, bob@gmail.com', 'hi'), None,
     ['T_FM_RT_ADDR'], ['T_FM_RT_DIGIT']),
    ('fm-header-none', fm_msg('x@corp.test', 'bob7@corp.test', 'hi'), None, [], ['T_FM_RT_DIGIT', 'T_FM_RT_ADDR']),
    ('fm-header-envfrom', fm_msg('x@corp.test', None, 'hi'), 'joe9@yahoo.com', ['T_FM_ENV_DIGIT'], []),
    ('fm-bulk-envfrom', fm_msg('alice@gmail.com', 'bob@yahoo.com', 'hi'), 'list-bounces@lists.test', ['T_FM_FROM'],
     ['T_FM_REPLYTO', 'T_FM_REPLY']),
    # Date:raw keeps the TAB; ALL:raw "Subject:" without a space
    ('date-tab', HDR.replace('Subject: lunch', 'Subject:lunch') + 'Date:\tMon, 1 Jan 2024 10:00:00 +0000\n\nhi\n',
     None, ['T_DATE_TAB', 'T_NOSPACE'], []),
    ('date-space', HDR + DATE + '\nhi\n', None, [], ['T_DATE_TAB', 'T_NOSPACE']),
    # relays, inferred trust: all public, so ALL-EXTERNAL is everything
    # from the first Received: on; ALL-TRUSTED only up to it
    ('relays-inferred', 'X-Outer-Mark: yes\n' + RCVD_EXT + HDR + DATE + '\nhi\n', None,
     ['T_EXT_HDRS', 'T_UNTRU_HDRS', 'T_TRU_HDRS'], ['T_ALL_TRUSTED', 'T_INT_HDRS']),
    # sendmail "(may be forged)" without "by HOST (": no rDNS, as SpamAssassin
    ('may-be-forged', 'Received: from mail1.example.com (host66.example.net [198.51.100.7] (may be forged)) by'
     ' mx.sift.test with ESMTP id h2F0c2x31856; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None,
     ['T_RDNS_EMPTY'], []),
    ('may-be-forged-by', 'Received: from mail1.example.com (host66.example.net [198.51.100.7] (may be forged)) by'
     ' mx.sift.test (8.13.8/8.13.8) with ESMTP id h2F0c2x31856; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE +
     '\nhi\n', None, [], ['T_RDNS_EMPTY']),
    # qmail "from HOST (IP) ... with SMTP": the host is the rDNS
    ('qmail', 'Received: from mail.example.net (192.0.2.3) by mx.sift.test with SMTP; 1 Jan 2024 10:00:01 -0000\n'
     + HDR + DATE + '\nhi\n', None, ['T_QMAIL_RDNS'], []),
    # " id " after the protocol is not qmail's format, but Received.pm's
    # later "HOST ([ident@]IP) ... by" form gives the same rDNS and HELO
    ('qmail-id', 'Received: from mail.example.net (192.0.2.3) by mx.sift.test with SMTP id x1; 1 Jan 2024 10:00:01'
     ' -0000\n' + HDR + DATE + '\nhi\n', None, ['T_QMAIL_RDNS'], []),
    # the relay authenticated its client (Received.pm's tokens): trusted,
    # auth= names how; the id as / id <?([^\s<>;]{3,})/ takes it
    ('auth-http', 'Received: from 198.51.100.7 (SquirrelMail authenticated user alice) by mail.example.test with'
     ' HTTP; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_AUTH_HTTP', 'T_ALL_TRUSTED'], []),
    ('auth-postfix', 'Received: from client.example (client.example [198.51.100.7]) (Authenticated sender: alice)'
     ' by mx.sift.test (Postfix) with ESMTP id A1; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None,
     ['T_AUTH_PF', 'T_ALL_TRUSTED'], []),
    ('auth-sendmail', 'Received: from client.example (client.example [198.51.100.7]) (authenticated bits=0) by'
     ' mx.sift.test (8.13.8/8.13.8) with ESMTP id h2F0c2x31856; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE +
     '\nhi\n', None, ['T_AUTH_SM', 'T_ALL_TRUSTED'], []),
    # a "from" line with neither an address nor a known skipped form is
    # unparseable, as in SpamAssassin
    ('relay-unparseable', 'Received: from mail.example.net (HELO client) by mx.sift.test with ESMTP id h2F0c2x31856;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_UNPARSE'], ['T_ALL_TRUSTED']),
    ('relay-parseable', 'Received: from mail.example.net by mx.sift.test (8.13.8/8.13.8) with ESMTP id h2F0c2x31856;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, [], ['T_UNPARSE']),
    # rDNS and HELO keep their case; the rDNS loses its final dot
    ('relay-rdns-case', 'Received: from Mail.Example.NET (Host-7.Example.NET. [198.51.100.7]) by mx.sift.test'
     ' (Postfix) with ESMTP id 4F2A; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None,
     ['T_RDNS_CASE'], []),
    # Exim's "([IP] ident=X helo=Y)" and sendmail's "(ident@rdns [IP])",
    # each with the envelope sender
    ('relay-exim-ident', 'Received: from client.example ([198.51.100.7] ident=joe helo=Client.Example) by'
     ' mx.sift.test with esmtp (Exim 4.96) (envelope-from <alice@example.test>) id 1qAbCd-0001Xy-2Z;'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_EXIM_IDENT'], ['T_SM_IDENT']),
    ('relay-sendmail-ident', 'Received: from client.example (joe@client.example [198.51.100.7]) by mx.sift.test'
     ' (8.13.8/8.13.8) with ESMTP id h2F0c2x31856 (envelope-from <alice@example.test>);'
     ' Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_SM_IDENT'], ['T_EXIM_IDENT']),
    ('relay-id', 'Received: from client.example (client.example [198.51.100.7]) by mx.sift.test (Postfix) with ESMTP'
     ' id <x1y2z3@host.test>; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_RELAY_ID'],
     ['T_AUTH_PF', 'T_ALL_TRUSTED']),
    ('relay-id-short', 'Received: from client.example (client.example [198.51.100.7]) by mx.sift.test (Postfix) with'
     ' ESMTP id ab for <bob@sift.test> id abc; Mon, 1 Jan 2024 10:00:01 +0000\n' + HDR + DATE + '\nhi\n', None,
     ['T_RELAY_ID'], []),
    ('can', HDR + DATE + '\nhi\n', None, ['T_CAN_LOADED'], ['T_CAN_MISSING', 'T_ARC']),
    ('arc', 'ARC-Seal: i=1; a=rsa-sha256; t=1; cv=none; d=example.test; s=s1; b=AAAA\n' + HDR + DATE + '\nhi\n',
     None, ['T_ARC'], ['T_ARC_DOM']),
]

# with trusted_networks: 203.0.113.5 trusted and internal, the client external
NET_CASES = [
    # X-Inner-Mark was added by the trusted, internal outer MX: not in the
    # external/untrusted headers, which start at the Received: it wrote
    ('nets', 'X-Outer-Mark: yes\n' + RCVD_EXT + HDR + DATE + '\nhi\n', None,
     ['T_RELAY_INT', 'T_RELAY_EXT', 'T_TRU_HDRS', 'T_INT_HDRS'], ['T_ALL_TRUSTED', 'T_EXT_HDRS', 'T_UNTRU_HDRS']),
    ('nets-msa', 'Received: from submit.sift.test (submit.sift.test [203.0.113.9]) by mx.sift.test (Postfix) with'
     ' ESMTP id C3; Mon, 1 Jan 2024 10:00:02 +0000\n' + HDR + DATE + '\nhi\n', None,
     ['T_MSA', 'T_ALL_TRUSTED'], []),
    ('nets-all-trusted', 'Received: from mx.outer.test (mx.outer.test [203.0.113.5]) by mx.sift.test (Postfix)'
     ' with ESMTP id A1; Mon, 1 Jan 2024 10:00:02 +0000\n' + HDR + DATE + '\nhi\n', None, ['T_ALL_TRUSTED'],
     ['T_EXT_HDRS']),
]


# look-alike letters (Hyperscan databases compiled): the regex as calls,
# lines of ASCII text and others
NATIVE_CASES = [
    ('longwords', HDR + DATE + '\nthe tangerine wonderful bicycles. umbrellas stop here\n', None, ['T_LONGWORDS'], []),
    ('longwords-comma', HDR + DATE + '\nthe tangerine wonderful, bicycles umbrellas stop here\n', None, [],
     ['T_LONGWORDS']),
    ('longwords-short', HDR + DATE + '\ntangerine wonderful bicycles tall umbrellas kitchens\n', None, [],
     ['T_LONGWORDS']),
    ('hexrun', HDR + DATE + '\nyour id 0123456789abcdef-00 here\n', None, ['T_HEXRUN'], []),
    ('hexrun-dashes', HDR + DATE + '\nyour id 0123456789--abcdef here\n', None, [], ['T_HEXRUN']),
    ('hexrun-short', HDR + DATE + '\nyour id 0123456789a here\n', None, [], ['T_HEXRUN']),
    ('longline', HDR + DATE + '\n' + 'x' * 998 + '\nshort\n', None, ['T_LONGLINE'], []),
    ('longline-short', HDR + DATE + '\n' + ('x' * 997 + '\n') * 3, None, [], ['T_LONGLINE']),
    ('ecount', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\ntree b\u00e9\n', None, ['T_E_3'],
     ['T_E_5']),
    ('ecount-4', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\ntrees\nb\u00e8e\n', None, [],
     ['T_E_3', 'T_E_5']),
    ('ecount-max', HDR + DATE + '\nthe eerie\n\neel\n', None, ['T_E_5'], ['T_E_3']),
    ('fuzzy', HDR + DATE + '\nthe d-e-c-a-d-e deal\n', None, ['T_LA_FUZZY'], []),
    ('fuzzy-twice', HDR + DATE + '\nthe DDe.cc-a-d-EE deal\n', None, ['T_LA_FUZZY'], []),
    ('fuzzy-utf8', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nthe d\u0435c\u0430de deal\n', None,
     ['T_LA_FUZZY'], []),
    ('fuzzy-entity', HDR + DATE + '\nthe dec&#97;de deal\n', None, ['T_LA_FUZZY'], []),
    ('fuzzy-word', HDR + DATE + '\nthe decade deal\n', None, [], ['T_LA_FUZZY']),
    ('fuzzy-gaps', HDR + DATE + '\nthe d--e-c-a-d-e deal\n', None, [], ['T_LA_FUZZY']),
    ('fuzzy-miss', HDR + DATE + '\nthe decal dealer\n', None, [], ['T_LA_FUZZY']),
]

LOOK_CASES = NATIVE_CASES + [
    ('calls-ascii', HDR + DATE + '\nI saw the bead cab, yes\n', None, ['T_CALLS'], []),
    ('calls-utf8', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nI saw the b\u0435ad c\u0430b, yes\n',
     None, ['T_CALLS'], []),
    ('calls-entity', HDR + DATE + '\nI saw the be&#97;d cab, yes\n', None, ['T_CALLS'], []),
    ('calls-miss', HDR + DATE + '\nI saw the bead cob, yes\n', None, [], ['T_CALLS']),
    ('calls-miss-utf8', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nI saw the b\u0435ad c\u043eb\n',
     None, [], ['T_CALLS']),
    # a word of look-alikes only the full prefilter finds
    ('look-word-utf8', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nthe b\u0435\u0430d one\n',
     None, ['T_LA_WORD'], []),
    ('look-word-ascii', HDR + DATE + '\nthe bead one\n', None, ['T_LA_WORD'], []),
    ('look-word-miss', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nthe b\u0435\u0430t one\n',
     None, [], ['T_LA_WORD']),
    # a multiple rule counted once on a line both databases report
    ('look-count-utf8', HDR + DATE + 'Content-Type: text/plain; charset=utf-8\n\nkk \u0430 kk \u0430 kk a\n',
     None, ['T_LA_3'], []),
    ('look-count-ascii', HDR + DATE + '\nkk a kk A kk a\n', None, ['T_LA_3'], []),
    ('utf-mode-ascii', HDR + DATE + '\nthe Kelvin scale\n', None, ['T_KELVIN_UTF'], []),
    ('utf-mode-miss', HDR + DATE + '\nthe Celsius scale\n', None, [], ['T_KELVIN_UTF']),
]


def write(path, text):
    with open(path, 'wb') as f:
        f.write(text.encode() if isinstance(text, str) else text)
    return path


def conf(root, name, rules, **extra):
    settings = {
        'plugin_directory': os.path.join(BUILD, 'plugins'), 'inbound_plugins': 'spam',
        'myhostname': 'mx.sift.test', 'spam_rules': rules, 'spam_cache_directory': '',
        'filterd_user': sifttest.daemon_user()}
    settings.update(extra)
    return sifttest.write_conf(os.path.join(root, name + '.conf'), settings)


def run_cases(root, cfg, cases):
    by_from = {}
    for name, msg, env, _, _ in cases:
        by_from.setdefault(env, []).append(write(os.path.join(root, name + '.eml'), msg))
    res = {}
    for env, files in by_from.items():
        args = [SIFTCTL, '-c', cfg, 'spam', 'check', '--json'] + (['--from', env] if env else []) + files
        r = subprocess.run(args, capture_output=True, text=True, timeout=300)
        check(r.returncode == 0, 'spam check runs (from %s)' % env, r.stderr[-2000:])
        for line in r.stdout.splitlines():
            j = json.loads(line)
            res[os.path.basename(j['file'])[:-4]] = {t['name'] for t in j['tests']}
    for name, _, _, hit, miss in cases:
        got = res.get(name, set())
        for rule in hit:
            check(rule in got, '%s: %s hits' % (name, rule), sorted(got))
        for rule in miss:
            check(rule not in got, '%s: %s does not hit' % (name, rule), sorted(got))


def look_alikes(root, rdir):
    """Look-alike letters through the Hyperscan databases: a regex PCRE2
    holds only as calls, the ASCII forms of the prefilters and the whole
    ones."""
    cache = os.path.join(root, 'lcache')
    os.makedirs(cache, mode=0o755)
    cfg = conf(root, 'look', os.path.join(rdir, '*.cf'), spam_cache_directory=cache)
    r = subprocess.run([SIFTCTL, '-c', cfg, 'spam', 'compile'], capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, 'look-alikes: databases compiled', r.stdout + r.stderr)
    r = subprocess.run([SIFTCTL, '-c', cfg, 'spam', 'lint', '-v'], capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    check('T_CALLS: too large for PCRE2 as written; compiled with its repeated groups as calls' in out,
          'lint names the regex compiled with calls', out[-3000:])
    m = re.search(r'(\d+) of them after a native check', out)
    check(m and int(m.group(1)) == 5,
          'lint counts the rules after a native check (two runs, words, a sequence, a counter)',
          out[-3000:])
    m = re.search(r'(\d+) in an ASCII form for ASCII lines', out)
    check(m and int(m.group(1)) >= 2 and 'T_CALLS' not in re.findall(r'^pcre2-fallback: [^:]+:\d+: (\w+):', out, re.M),
          'the look-alike rules are prefiltered by their ASCII forms', out[-3000:])
    run_cases(root, cfg, LOOK_CASES)


def profile_patterns(root):
    """--profile-patterns: each Hyperscan pattern timed alone over the texts
    its group's database scanned, the costliest first."""
    pdir = os.path.join(root, 'prules')
    os.makedirs(pdir)
    write(os.path.join(pdir, '10_cost.cf'),
          'body T_COSTLY /(?:[a-z]{2,}\\W+[a-z]{2,}\\s+){12}/\nscore T_COSTLY 0.5\n'
          'body T_CHEAP /zqxjkvbw/\nscore T_CHEAP 0.5\n'
          'header T_SUBJ Subject =~ /urgent/i\nscore T_SUBJ 0.5\n'
          'header T_SUBJ2 Subject =~ /offer/i\nscore T_SUBJ2 0.5\n')
    cache = os.path.join(root, 'pcache')
    os.makedirs(cache, mode=0o755)
    cfg = conf(root, 'patterns', os.path.join(pdir, '*.cf'), spam_cache_directory=cache)
    r = subprocess.run([SIFTCTL, '-c', cfg, 'spam', 'compile'], capture_output=True, text=True, timeout=600)
    check(r.returncode == 0, 'profile-patterns: databases compiled', r.stdout + r.stderr)
    words = ' '.join(('alpha bravo charlie delta foxtrot golfing hotel india juliet kilos lima mikes ' * 2000).split())
    files = []
    for i in range(4):
        files.append(write(os.path.join(root, 'prose%d.eml' % i),
                           'From: a@example.com\nTo: b@example.com\nSubject: urgent %d\n\n%s\n' % (i, words)))
    r = subprocess.run([SIFTCTL, '-c', cfg, 'spam', 'check', '--profile-patterns'] + files,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout
    head = [ln for ln in out.splitlines() if ln.startswith('Hyperscan patterns, each alone')]
    check(r.returncode == 0 and out.startswith('profile: 4 messages, ') and len(head) == 1
          and ': 4 patterns, ' in head[0], 'profile-patterns: every pattern of the databases timed',
          out + r.stderr[-2000:])
    rows = [ln.split() for ln in out.split('ms/msg  kind       rule\n', 1)[-1].splitlines()]
    names = [x[2] for x in rows if len(x) == 3]
    check(names[:1] == ['T_COSTLY'] and set(names) == {'T_COSTLY', 'T_CHEAP', 'T_SUBJ', 'T_SUBJ2'}
          and all(float(x[0]) >= 0 for x in rows if len(x) == 3),
          'profile-patterns: the costliest pattern first, with its kind', out)
    check(['header', 'T_SUBJ'] in [x[1:] for x in rows], 'profile-patterns: header patterns too', out)


def main():
    root = tempfile.mkdtemp(prefix='sift-spam-rules-')
    os.chmod(root, 0o755)
    try:
        rdir = os.path.join(root, 'rules')
        os.makedirs(rdir)
        write(os.path.join(rdir, '10_test.cf'), RULES)
        run_cases(root, conf(root, 'plain', os.path.join(rdir, '*.cf')), CASES + ZERO_CASES + NATIVE_CASES)
        run_cases(root, conf(root, 'net', os.path.join(rdir, '*.cf'), spam_dns_available='yes',
                             dns_servers='127.0.0.1:9'), ZERO_NET_CASES)
        write(os.path.join(rdir, '20_nets.cf'), NETS)
        run_cases(root, conf(root, 'nets', os.path.join(rdir, '*.cf')), NET_CASES)
        # --profile: where the time of the messages went, by rule kind and rule
        files = [os.path.join(root, c[0] + '.eml') for c in CASES[:6]]
        r = subprocess.run([SIFTCTL, '-c', conf(root, 'plain', os.path.join(rdir, '*.cf')), 'spam', 'check',
                            '--profile'] + files, capture_output=True, text=True, timeout=300)
        out = r.stdout
        check(r.returncode == 0 and out.startswith('profile: 6 messages, '), 'profile: messages counted',
              out + r.stderr[-2000:])
        kinds = {ln.split()[0]: [float(x) for x in ln.split()[1:]] for ln in out.splitlines()
                 if ln.split() and ln.split()[0] in ('header', 'body', 'rawbody', 'full', 'uri', 'mimeheader')}
        check(len(kinds) == 6 and all(len(v) == 4 and min(v) >= 0 for v in kinds.values())
              and kinds['body'][3] > 0 and abs(sum(kinds['body'][:3]) - kinds['body'][3]) < 0.002,
              'profile: each rule kind with texts, Hyperscan, PCRE2 and total', out)
        ranked = out.split('rules by PCRE2 time:\n', 1)[-1].splitlines()[1:]
        check(any(ln.split()[-1] == 'T_NONEMPTY' and float(ln.split()[1]) >= 1 for ln in ranked),
              'profile: a body regex rule ranked with its calls per message', out)
        check('X-Spam-Status' not in out, 'profile: no per-message report', out)
        profile_patterns(root)
        look_alikes(root, rdir)
        rows = {ln.rsplit(None, 1)[0]: ln.split()[-1] for ln in out.splitlines() if ln[:1].isalpha()}
        check(all(k in rows for k in ('native', 'evals', 'metas', 'absent hdrs', 'the rest')),
              'profile: native checks, evals, metas, absent headers and the rest', out)
        evals = out.split('eval rules by time:\n', 1)[-1].splitlines()[1:]
        check(any(ln.endswith(' T_BLANK (check_blank_line_ratio)') for ln in evals),
              'profile: eval rules ranked with their function', out)
        # rules not run: scored 0 in every set the engine uses (T_ZERO_BODY,
        # __ZERO_SUB, T_ZERO_EVAL, T_ZERO_OFFM, T_ZERO_SET0, T_ZERO_NETNOT
        # without network tests) and the __ rules nothing that runs reads
        # (__UNUSED_BODY, __UNUSED_META and __NEVER_HIT, which only
        # T_ZERO_NETNOT reads; __USED_BODY is read through __USED_MID)
        r = subprocess.run([SIFTCTL, '-c', conf(root, 'plain', os.path.join(rdir, '*.cf')), 'spam', 'lint'],
                           capture_output=True, text=True, timeout=300)
        check('not run: 6 scored 0, 3 __ rules nothing reads;' in r.stdout, 'lint counts the rules not run',
              r.stdout + r.stderr)
        # a glob matching nothing is an error naming the pattern
        pat = os.path.join(rdir, 'none-*.cf')
        r = subprocess.run([SIFTCTL, '-c', conf(root, 'noglob', '%s %s' % (os.path.join(rdir, '10_test.cf'), pat)),
                            'spam', 'lint'], capture_output=True, text=True, timeout=300)
        check(r.returncode != 0 and pat + ': no file matches' in r.stdout + r.stderr,
              'a glob matching nothing is an error naming it', r.stdout + r.stderr)
        # a rule that is never run (scored 0) still gets its regex checked
        write(os.path.join(rdir, '30_bad.cf'), 'body T_BROKEN_ZERO /(unclosed/\nscore T_BROKEN_ZERO 0\n')
        r = subprocess.run([SIFTCTL, '-c', conf(root, 'badzero', os.path.join(rdir, '*.cf')), 'spam', 'lint'],
                           capture_output=True, text=True, timeout=300)
        check(r.returncode != 0 and 'T_BROKEN_ZERO: regex does not compile' in r.stdout + r.stderr,
              'a broken regex is an error in a rule scored 0 too', r.stdout + r.stderr)
        # a bad network is a rule error
        write(os.path.join(rdir, '30_bad.cf'), 'trusted_networks 300.1.2.3/8\n')
        r = subprocess.run([SIFTCTL, '-c', conf(root, 'badnet', os.path.join(rdir, '*.cf')), 'spam', 'lint'],
                           capture_output=True, text=True, timeout=300)
        check(r.returncode != 0 and "bad network '300.1.2.3/8'" in r.stdout + r.stderr,
              'a bad trusted_networks entry is an error', r.stdout + r.stderr)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    sys.exit(done())


if __name__ == '__main__':
    main()
