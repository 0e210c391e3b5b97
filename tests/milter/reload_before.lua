-- Before the reload, later@x.example passes.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "later@x.example") == SMFIR_CONTINUE, "rejected before reload")
mt.disconnect(conn)
