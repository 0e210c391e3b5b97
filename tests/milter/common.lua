-- common.lua: helpers for the miltertest scripts. Globals from run.py:
-- port (filterd's TCP port).
function open(ip, host, daemon)
	local conn = mt.connect("inet:" .. port .. "@127.0.0.1", 20, 0.25)
	assert(conn, "cannot connect to filterd")
	if daemon then
		assert(mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", daemon, "j", "mx.test") == nil)
	else
		assert(mt.macro(conn, SMFIC_CONNECT, "{daemon_name}", "mx.test", "j", "mx.test") == nil)
	end
	assert(mt.conninfo(conn, host or "client.example", ip or "198.51.100.7") == nil)
	return conn
end

function expect(conn, want, what)
	local got = mt.getreply(conn)
	if got ~= want then
		error(what .. ": got reply " .. tostring(got) .. ", want " .. tostring(want))
	end
end

function envelope(conn, from, rcpts)
	assert(mt.helo(conn, "client.example") == nil)
	expect(conn, SMFIR_CONTINUE, "helo")
	assert(mt.mailfrom(conn, from) == nil)
	return mt.getreply(conn)
end

function message(conn, headers, body)
	for _, h in ipairs(headers) do
		assert(mt.header(conn, h[1], h[2]) == nil)
	end
	assert(mt.eoh(conn) == nil)
	-- filterd asks for no body when no plugin reads it (SMFIP_NOBODY)
	if not mt.test_option(conn, SMFIP_NOBODY) then
		assert(mt.bodystring(conn, body) == nil)
	end
	assert(mt.macro(conn, string.byte("E"), "i", "4ABCDEF123") == nil)
	assert(mt.eom(conn) == nil)
	return mt.getreply(conn)
end

std_headers = {{"From", "alice@example.org"}, {"To", "bob@example.com"},
	{"Subject", "hello"}, {"Date", "Sat, 28 Nov 2026 10:00:00 +0000"},
	{"Message-ID", "<1@example.org>"}}
