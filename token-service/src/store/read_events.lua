-- Reads the event stream for a watcher, in one step with the stream's bounds, so "events after
-- the cursor were trimmed" is never missed between two commands.
-- KEYS[1] the event stream. ARGV[1] the cursor (exclusive, "<ms>-<seq>") or '' for no entries,
-- ARGV[2] the most entries to return.
-- Returns {the oldest retained entry id, last-generated-id, entries as XRANGE returns them};
-- "0-0" for both ids when the stream does not exist yet. Trimming (MAXLEN) only ever removes
-- the oldest entries, so a cursor older than the oldest retained entry may have lost events.
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', '0-0', {}} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local last = '0-0'
for i = 1, #info, 2 do
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first = '0-0'
if oldest[1] then first = oldest[1][1] end
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
end
return {first, last, entries}
