-- Reserves the next slot of an install's Snyk request budget: a GCRA (generic cell rate
-- algorithm) on Redis's own clock, so every replica of every service counts against one schedule.
-- KEYS[1]: the budget hash {tat = theoretical arrival time, pause = no request before} (ms).
-- ARGV[1]: the emission interval (ms per request, fractional); ARGV[2]: the burst tolerance (ms);
-- ARGV[3]: the longest the caller may wait (ms); ARGV[4]: a 429's Retry-After to record (ms, 0 none).
-- Returns {1, wait_ms, pause}: reserved, send after wait_ms; or {0, wait_ms, pause}: nothing
-- reserved, the earliest slot is wait_ms away. A reported pause is recorded either way.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tat', 'pause')
local tat = tonumber(state[1]) or now
local pause = tonumber(state[2]) or 0
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local report = tonumber(ARGV[4])
if report > 0 and now + report > pause then
  pause = now + report
end
local start = math.max(now, tat - tolerance, pause)
local wait = start - now
local granted = 0
if wait <= max_wait then
  granted = 1
  tat = math.max(tat, start) + interval
end
if granted == 1 or report > 0 then
  redis.call('HSET', KEYS[1], 'tat', string.format('%.3f', tat), 'pause', string.format('%.3f', pause))
  -- Kept while it still matters: the schedule and the pause, then a minute of quiet.
  redis.call('PEXPIRE', KEYS[1], math.ceil(math.max(tat, pause) - now) + 60000)
end
return {granted, math.ceil(wait), string.format('%.3f', pause)}
