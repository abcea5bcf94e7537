-- Releases a lease, or deletes an install under its lease.
-- KEYS[1] the lease; for a delete also KEYS[2] the grant hash and KEYS[3] (optional) the event
-- stream. ARGV[1] the lease owner; ARGV[2] 'release' or 'delete'; for a delete ARGV[3] the
-- generation the deleter read (and revoked the refresh token of) and ARGV[4..8] the "deleted"
-- event (event.lua).
-- Returns the number of keys deleted, 0 when the lease is not ARGV[1], -1 (delete) when the grant
-- moved past ARGV[3] (re-read, revoke the newer token, retry). A release never writes an event.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] ~= 'delete' then return redis.call('DEL', KEYS[1]) end
local g = redis.call('HGET', KEYS[2], 'gen')
if g and g ~= ARGV[3] then return -1 end
local n = redis.call('DEL', KEYS[1], KEYS[2])
if g then emit(3, 4, 0) end
return n
