-- check_client_access by address (cidr map): rejected at connect.
dofile(dir .. "/common.lua")
local conn = open("192.0.2.66", "bad.example.net")
expect(conn, SMFIR_REJECT, "connect")
mt.disconnect(conn)
-- parent-domain match on the client name (texthash map): "evil.example"
conn = open("198.51.100.9", "mx1.evil.example")
expect(conn, SMFIR_REJECT, "connect by name")
mt.disconnect(conn)
