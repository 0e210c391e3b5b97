-- Twenty sessions at once, interleaved.
dofile(dir .. "/common.lua")
local conns = {}
for i = 1, 20 do
	conns[i] = open()
	expect(conns[i], SMFIR_CONTINUE, "connect " .. i)
end
for i = 1, 20 do
	assert(envelope(conns[i], "user" .. i .. "@example.org") == SMFIR_CONTINUE)
end
for i = 1, 20 do
	assert(mt.rcptto(conns[i], (i % 2 == 0) and "nobody@example.com" or "bob@example.com") == nil)
	expect(conns[i], (i % 2 == 0) and SMFIR_REPLYCODE or SMFIR_CONTINUE, "rcpt " .. i)
end
for i = 1, 20, 2 do
	assert(mt.rcptto(conns[i], "carol@example.com") == nil)
	expect(conns[i], SMFIR_CONTINUE, "rcpt2 " .. i)
	assert(message(conns[i], std_headers, string.rep("line\r\n", i * 100)) == SMFIR_CONTINUE)
	assert(mt.eom_check(conns[i], MT_HDRADD, "X-Testplug"))
end
for i = 1, 20 do
	mt.disconnect(conns[i])
end
