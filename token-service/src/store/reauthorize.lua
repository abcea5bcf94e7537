-- Reconnect: replaces an existing install's grant with a newly authorized one under the same id.
-- KEYS[1] the grant hash, KEYS[2] (optional) the event stream.
-- ARGV[1] the generation the record was sealed for (current + 1 = ARGV[1]), ARGV[2] the sealed
-- record; ARGV[3..7] the "reauthorized" event (event.lua).
-- Bumps the generation (fences out every "started"/"sending"/verdict write of a refresh begun
-- before) and deletes the "sending" mark (fences out the late settle of a refresh already at
-- Snyk: it finds no mark of its own and revokes its pair), in one step with the new record.
-- Returns the new generation; 0 when the install does not exist; minus the current generation
-- when the record moved: re-seal for that generation and retry. An event only with the write.
local g = redis.call('HGET', KEYS[1], 'gen')
if not g then return 0 end
if tonumber(g) + 1 ~= tonumber(ARGV[1]) then return -tonumber(g) end
redis.call('HSET', KEYS[1], 'gen', ARGV[1], 'rec', ARGV[2])
redis.call('HDEL', KEYS[1], 'sending')
emit(2, 3, ARGV[1])
return tonumber(ARGV[1])
