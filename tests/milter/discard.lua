-- DISCARD from the sender map ends the message with a discard.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "discard@x.example") == SMFIR_DISCARD, "not discarded")
mt.disconnect(conn)
