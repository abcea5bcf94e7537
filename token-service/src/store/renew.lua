-- Extends the lease KEYS[1] to ARGV[2] ms while ARGV[1] holds it. Returns 1, or 0 when it is lost.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
