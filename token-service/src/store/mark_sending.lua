-- The "sending" mark, written right before a refresh token goes to Snyk.
-- KEYS[1] the grant hash, KEYS[2] the refresh lease.
-- ARGV[1] the generation the holder marked "started" at, ARGV[2] the lease owner, ARGV[3] the mark.
-- Returns 1 when written, 0 when the record moved on (or is gone), -1 when the lease is not ours:
-- then the holder must not send.
if redis.call('HGET', KEYS[1], 'gen') ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return -1 end
redis.call('HSET', KEYS[1], 'sending', ARGV[3])
return 1
