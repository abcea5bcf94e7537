-- Deletes every key of KEYS while KEYS[1] still holds ARGV[1]: releases a lease (one key), or
-- deletes a grant together with the lease that guards it. Returns the number of keys deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', unpack(KEYS)) end
return 0
