-- Stores the outcome of a refresh, fenced on the sender's own "sending" mark, not on the lease: a
-- holder frozen past its lease still lands its pair, even over a NEEDS_REAUTH written meanwhile.
-- A reconnect (reauthorize.lua) deletes the mark, so a refresh sent before it never lands.
-- KEYS[1] the grant hash, KEYS[2] (optional) the event stream: passed for "refreshed",
-- "needs_reauth", "in_doubt" and "keepalive_failed", not when a failed refresh only clears its
-- marks. ARGV[1] the mark, ARGV[2] the generation the record was sealed for
-- (expected + 1 = ARGV[2]), ARGV[3] the sealed record; ARGV[4..8] the event (event.lua).
-- Returns the new generation; 0 when the mark is not ours any more (install deleted or
-- reconnected); minus the current generation when the record moved: re-seal for that generation
-- and retry. An event only with the new generation.
if redis.call('HGET', KEYS[1], 'sending') ~= ARGV[1] then return 0 end
local g = redis.call('HGET', KEYS[1], 'gen')
if tonumber(g) + 1 ~= tonumber(ARGV[2]) then return -tonumber(g) end
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'rec', ARGV[3])
redis.call('HDEL', KEYS[1], 'sending')
emit(2, 4, ARGV[2])
return tonumber(ARGV[2])
