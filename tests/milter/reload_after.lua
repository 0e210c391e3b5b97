-- After the reload, the new sender map rejects later@x.example.
dofile(dir .. "/common.lua")
local conn = open()
expect(conn, SMFIR_CONTINUE, "connect")
assert(envelope(conn, "later@x.example") == SMFIR_REPLYCODE, "reloaded map not in force")
mt.disconnect(conn)
