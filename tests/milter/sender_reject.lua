-- check_sender_access: REJECT with text, at MAIL; a custom code at RCPT.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "spam@bad.example") == SMFIR_REPLYCODE, "MAIL not rejected")
mt.disconnect(conn)
-- a domain entry matches every sender of the domain and its subdomains
conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "anyone@sub.spammer.example") == SMFIR_REPLYCODE, "domain not rejected")
mt.disconnect(conn)
