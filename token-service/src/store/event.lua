-- Prepended to every script that changes an install (store/connect.rs): appends one lifecycle
-- event to the stream `snykapps:events` (docs/design.md, "Events"), in the same script as the
-- change, so an event exists if and only if the change happened. Called only after the script's
-- fence passed. `ek` is the index in KEYS of the stream: when that key is not passed (Redis Cluster,
-- or a write that is no lifecycle change, like the "started" mark) nothing is appended.
-- The event's arguments start at ARGV[ea]: MAXLEN (approximate trim), install id, kind, reason
-- ('' = none), orgs (comma-separated org ids, '' = none). `gen` is the generation after the
-- change (0 for a deletion). `at` is Redis's own clock (ms). Never a token.
local function emit(ek, ea, gen)
  local stream = KEYS[ek]
  if not stream then return end
  local t = redis.call('TIME')
  local at = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local f = {'kind', ARGV[ea + 2], 'install_id', ARGV[ea + 1], 'at', string.format('%d', at),
    'gen', tostring(gen)}
  if ARGV[ea + 3] ~= '' then f[#f + 1] = 'reason'; f[#f + 1] = ARGV[ea + 3] end
  if ARGV[ea + 4] ~= '' then f[#f + 1] = 'orgs'; f[#f + 1] = ARGV[ea + 4] end
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[ea], '*', unpack(f))
end
