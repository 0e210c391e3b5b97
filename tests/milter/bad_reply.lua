-- A plugin's invalid reply: the verdict keeps its class and gets the
-- default reply (never a bare reject). Globals from run.py: want_code,
-- want_xcode, want_text.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "alice@example.org") == SMFIR_CONTINUE)
assert(mt.rcptto(conn, "bob@example.com") == nil)
expect(conn, SMFIR_CONTINUE, "rcpt")
local r = message(conn, std_headers, "Hi.\r\n")
assert(r == SMFIR_REPLYCODE, "eom reply " .. tostring(r) .. ", want a reply code")
assert(mt.eom_check(conn, MT_SMTPREPLY, want_code, want_xcode, want_text),
	"reply is not " .. want_code .. " " .. want_xcode .. " " .. want_text)
mt.disconnect(conn)
