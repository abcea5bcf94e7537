-- Creates a grant at generation 1. KEYS[1] the grant hash, KEYS[2] (optional) the event stream.
-- ARGV[1] the record sealed for generation 1; ARGV[2..6] the "installed" event (event.lua).
-- Returns 1, or 0 when the install id is already in use (no event then).
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'gen', '1', 'rec', ARGV[1])
emit(2, 2, 1)
return 1
