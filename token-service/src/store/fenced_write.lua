-- Writes a sealed record over an expected generation.
-- KEYS[1] the grant hash, KEYS[2] the install's refresh lease, KEYS[3] (optional) the event
-- stream: passed only for a lifecycle change (the NEEDS_REAUTH "refresh_in_doubt" verdict), not
-- for the "started" mark or a re-seal.
-- ARGV[1] the expected generation, ARGV[2] the record sealed for generation ARGV[1] + 1,
-- ARGV[3] the lease owner the writer must be ('' = no lease check); ARGV[4..8] the event
-- (event.lua), when KEYS[3] is passed.
-- Returns the new generation, 0 when the record is not at ARGV[1] (or gone), -1 when the lease is
-- not ARGV[3]; an event only with the new generation. The "sending" field is left as it is:
-- only settle.lua and reauthorize.lua clear it.
local g = redis.call('HGET', KEYS[1], 'gen')
if g ~= ARGV[1] then return 0 end
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[3] then return -1 end
local n = tonumber(ARGV[1]) + 1
redis.call('HSET', KEYS[1], 'gen', tostring(n), 'rec', ARGV[2])
emit(3, 4, n)
return n
