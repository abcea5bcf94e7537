-- Stores the outcome of a refresh, fenced on the sender's own "sending" mark, not on the lease: a
-- holder frozen past its lease still lands its pair, even over a NEEDS_REAUTH written meanwhile.
-- KEYS[1] the grant hash. ARGV[1] the mark, ARGV[2] the generation the record was sealed for
-- (expected + 1 = ARGV[2]), ARGV[3] the sealed record.
-- Returns the new generation; 0 when the mark is not ours any more (install deleted or replaced);
-- minus the current generation when the record moved: re-seal for that generation and retry.
if redis.call('HGET', KEYS[1], 'sending') ~= ARGV[1] then return 0 end
local g = redis.call('HGET', KEYS[1], 'gen')
if tonumber(g) + 1 ~= tonumber(ARGV[2]) then return -tonumber(g) end
redis.call('HSET', KEYS[1], 'gen', ARGV[2], 'rec', ARGV[3])
redis.call('HDEL', KEYS[1], 'sending')
return tonumber(ARGV[2])
