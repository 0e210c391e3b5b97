-- OK from the sender map whitelists: later plugins (testplug) are skipped.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "ok@good.example") == SMFIR_CONTINUE)
assert(mt.rcptto(conn, "nobody@example.com") == nil)
-- the recipient map is not consulted for a whitelisted message either
expect(conn, SMFIR_CONTINUE, "rcpt")
assert(message(conn, std_headers, "Hi.\r\n") == SMFIR_CONTINUE)
assert(not mt.eom_check(conn, MT_HDRADD, "X-Testplug"), "testplug ran after OK")
mt.disconnect(conn)
